"""Dead-lettering: an event that fails validation goes, byte for byte, to the dead-letter topic.

The value is the original bytes (so nothing is lost and it can be fixed and replayed); headers carry
the reason (field and problem) and where it came from (topic, partition, offset).
"""

from __future__ import annotations

import logging

from faust.types import EventT

from models import InvalidEvent

from .base import dead_letter_topic

log = logging.getLogger("parcelwatch.deadletter")


async def dead_letter(event: EventT, error: Exception) -> str:
    """Send ``event`` to the dead-letter topic with ``error`` as its reason; returns the reason label."""
    msg = event.message
    if isinstance(error, InvalidEvent):
        field, problem = error.field, error.problem
    else:
        field, problem = "$", f"{type(error).__name__}: {error}"
    headers = {
        "pw-reason": f"{field}: {problem}"[:1000].encode(),
        "pw-field": field.encode(),
        "pw-source-topic": msg.topic.encode(),
        "pw-source-partition": str(msg.partition).encode(),
        "pw-source-offset": str(msg.offset).encode(),
    }
    await dead_letter_topic.send(key=msg.key, value=msg.value if msg.value is not None else b"", headers=headers)
    # Log where and why, never the payload (it may carry buyer data).
    log.warning("dead-lettered %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, headers["pw-reason"].decode())
    return field
