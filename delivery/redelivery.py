"""Records sent again after a crash, recognised by a reader whose effect is not idempotent by itself.

A ``kill -9`` can land what a record sent (issue events, deliveries, milestones) and lose the state that
says it was sent (``delivery/checkpoint.py``): the record is processed again and sends them again. The
Redis sinks absorb that by key. A reader that only adds up what it reads (the lane baselines' feed of
deliveries) remembers the keys it read lately instead: a copy sent again comes within the records written
while the worker was down and processed its uncommitted records again, far fewer than it remembers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


class SeenLately:
    """The last ``keep`` keys seen, each once (the oldest forgotten first)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        # Keys are kept as their hashes: an accidental equal hash forgets one copy of a statistic, never
        # anything staff see. (Not a dict's insertion order: taking its first key again and again after
        # deleting the ones before walks over their empty slots, about 20 us a key at 50,000 kept.)
        self._seen: set[int] = set()
        self._order: deque[int] = deque()

    def first_time(self, key: Hashable) -> bool:
        """Whether ``key`` is new among the last ``keep`` keys (and remember it)."""
        h = hash(key)
        seen = self._seen
        if h in seen:
            return False
        seen.add(h)
        order = self._order
        order.append(h)
        if len(order) > self.keep:
            seen.discard(order.popleft())
        return True

    def __len__(self) -> int:
        return len(self._seen)
