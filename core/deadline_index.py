"""The deadline index: which subjects of a partition fall due in which minute.

Keys (one table, per partition so that a tick on partition p touches only p's subjects):

- ``"{p}:{bucket}"``: the subjects due in minute ``bucket`` (epoch seconds // 60), newline-separated; a
  crowded minute continues in ``"{p}:{bucket}:1"`` ... ``"{p}:{bucket}:{n}"`` with ``"{p}:{bucket}:tail"`` -> n.
- ``"{p}:cursor"``: the first bucket the partition's sweep has not swept yet.
- ``"{p}:transit:{hour}"``: the parcels waiting for their transit limit, by pickup hour (epoch seconds //
  3600), one ``subject<TAB>origin<TAB>destination`` line each, in chunks like a bucket; ``"{p}:transit"``:
  the oldest such hour that may hold any; ``"{p}:refreshed"``: the last lanes' refresh the partition acted
  on. A refresh re-checks the ones a lower limit makes due (core/processor.py).

The index is lazy (a subject is filed under the earliest deadline it has had; a stale entry is harmless):
the processor (``core/processor.py``) decides what to file and when; this module stores it.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

BUCKET_SECONDS = 60
TRANSIT_BUCKET_SECONDS = 3600

# A bucket's subjects are kept in chunks of at most this many lines: "{p}:{b}" (the first chunk), then
# "{p}:{b}:1" ... "{p}:{b}:{n}" with "{p}:{b}:tail" -> n. Every filing rewrites one chunk (a table write
# is a whole value), so its cost stays bounded when thousands of subjects fall due in one minute: a
# backlog catching up files every subject with a new finding into the current minute, and one growing
# value rewritten per filing was quadratic (``bench.records``: 66.8 MiB of index changelog for 20k
# events, 5.4 MiB in chunks).
CHUNK_SUBJECTS = 64


def bucket_of(t: float) -> int:
    return int(t // BUCKET_SECONDS)


def append_to_bucket(index: MutableMapping[str, bytes], key: str, line: bytes) -> None:
    """Add ``line`` (a subject and a newline) to the bucket ``key``, in its last chunk with room."""
    head = index.get(key)
    if head is None or head.count(b"\n") < CHUNK_SUBJECTS:
        index[key] = line if head is None else head + line
        return
    tail_key = f"{key}:tail"
    raw_tail = index.get(tail_key)
    n = 1 if raw_tail is None else int(raw_tail)
    chunk = index.get(f"{key}:{n}")
    # (A crash can land a chunk without its tail pointer: step over any full chunk that exists.)
    while chunk is not None and chunk.count(b"\n") >= CHUNK_SUBJECTS:
        n += 1
        chunk = index.get(f"{key}:{n}")
    if raw_tail is None or int(raw_tail) != n:
        index[tail_key] = str(n).encode()
    index[f"{key}:{n}"] = line if chunk is None else chunk + line


def rewrite_bucket(key: str, before: dict[str, bytes], lines: list[bytes]) -> dict[str, bytes | None]:
    """The writes that leave the bucket ``key`` (stored as ``before``, from ``bucket_chunks``) holding exactly
    ``lines`` (each ending in a newline): its chunks rewritten, the ones no longer needed deleted."""
    writes: dict[str, bytes | None] = dict.fromkeys(before)
    chunks = [b"".join(lines[i : i + CHUNK_SUBJECTS]) for i in range(0, len(lines), CHUNK_SUBJECTS)]
    for n, chunk in enumerate(chunks):
        writes[key if n == 0 else f"{key}:{n}"] = chunk
    if len(chunks) > 1:
        writes[f"{key}:tail"] = str(len(chunks) - 1).encode()
    return {k: v for k, v in writes.items() if before.get(k) != v}


def bucket_chunks(index: MutableMapping[str, bytes], key: str) -> dict[str, bytes]:
    """Every key the bucket ``key`` is stored under, with its value (the tail pointer's too)."""
    found: dict[str, bytes] = {}
    head = index.get(key)
    if head is not None:
        found[key] = head
    tail_key = f"{key}:tail"
    raw_tail = index.get(tail_key)
    if raw_tail is not None:
        found[tail_key] = b""  # the pointer itself holds no subjects
        for n in range(1, int(raw_tail) + 1):
            chunk = index.get(f"{key}:{n}")
            if chunk is not None:
                found[f"{key}:{n}"] = chunk
    return found


def cursor_key(partition: int) -> str:
    return f"{partition}:cursor"


def bucket_key(partition: int, bucket: int) -> str:
    return f"{partition}:{bucket}"


def transit_bucket_of(pickup: float) -> int:
    return int(pickup // TRANSIT_BUCKET_SECONDS)


def transit_key(partition: int, hour: int) -> str:
    return f"{partition}:transit:{hour}"


def transit_first_key(partition: int) -> str:
    return f"{partition}:transit"


def refreshed_key(partition: int) -> str:
    return f"{partition}:refreshed"


def describe(items: Iterable[tuple[Any, Any]], now: float) -> dict[str, dict[str, Any]]:
    """Per partition of an index's ``(key, value)`` items: how far its sweep has got and what is filed
    (the health page's view for on-call)."""
    parts: dict[int, dict[str, Any]] = {}
    for key, value in items:
        partition, _, rest = str(key).partition(":")
        if not partition.isdigit():
            continue
        entry = parts.setdefault(int(partition), {"cursor_age_seconds": None, "buckets": 0, "filed": 0,
                                                   "earliest_due_in_seconds": None})
        bucket, _, chunk = rest.partition(":")  # "{bucket}", "{bucket}:{n}" or "{bucket}:tail"
        if rest == "cursor":
            entry["cursor_age_seconds"] = round(now - int(value) * BUCKET_SECONDS)
        elif bucket.lstrip("-").isdigit() and chunk != "tail":
            entry["buckets"] += 0 if chunk else 1
            entry["filed"] += bytes(value).count(b"\n")
            due_in = round(int(bucket) * BUCKET_SECONDS - now)
            if entry["earliest_due_in_seconds"] is None or due_in < entry["earliest_due_in_seconds"]:
                entry["earliest_due_in_seconds"] = due_in
    return {str(p): parts[p] for p in sorted(parts)}
