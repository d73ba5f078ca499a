"""Dead-lettering: an event that fails validation goes, byte for byte, to the dead-letter topic.

The value is the original bytes (so nothing is lost and it can be fixed and replayed); headers carry
the reason (field and problem) and where it came from (topic, partition, offset). A bad element of a
batch record (batching.py) goes alone, re-encoded as the JSON object it was, with its index in
``pw-batch-index``: the other elements of the record are processed as usual.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from faust.types import EventT

from models import InvalidEvent

from .base import dead_letter_topic

log = logging.getLogger("parcelwatch.deadletter")


async def dead_letter(event: EventT, error: Exception, element: tuple[int, Any] | None = None) -> str:
    """Send ``event`` (or its batch ``element``: index, decoded value) to the dead-letter topic with
    ``error`` as its reason; returns the reason label."""
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
    key: str | bytes | None = msg.key
    value = msg.value if msg.value is not None else b""
    where = f"{msg.topic}[{msg.partition}]@{msg.offset}"
    if element is not None:
        headers["pw-batch-index"] = str(element[0]).encode()
        value = orjson.dumps(element[1])
        key = _element_key(element[1]) or key
        where += f" element {element[0]}"
    await dead_letter_topic.send(key=key, value=value, headers=headers)
    # Log where and why, never the payload (it may carry buyer data).
    log.warning("dead-lettered %s: %s", where, headers["pw-reason"].decode())
    return field


def _element_key(doc: Any) -> str | None:
    """The key the element would have had as a record of its own (a batch record's key names no event)."""
    if not isinstance(doc, dict):
        return None
    carrier, number = doc.get("carrier"), doc.get("tracking_number")
    if isinstance(carrier, str) and isinstance(number, str) and "order_id" not in doc:
        return f"{carrier}:{number}"[:200]
    for field in ("order_id", "subject"):
        if isinstance(doc.get(field), str):
            return str(doc[field])[:200]
    return None
