"""Dead letters: a record (or one element of a batch record) that cannot be processed goes, byte for byte,
to the dead-letter topic with its reason, and the worker goes on.

The value is the original bytes (so nothing is lost and it can be fixed and replayed); headers carry the
reason (field and problem) and where it came from (topic, partition, offset). A bad element of a batch
record (``batch_records.py``) goes alone, re-encoded as the JSON object it was, with its index in
``pw-batch-index``: the other elements of the record are processed as usual. Logs say where and why,
never the payload (it may carry buyer data).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from faust.types import EventT, TopicT

from domain.events import InvalidEvent
from telemetry.recorder import Recorder

log = logging.getLogger("parcelwatch.deadletter")
_PROBLEMS_KEPT = 20  # of a push's rejected elements, the first ones named in its dead letter's headers


class DeadLetters:
    """Sends what cannot be processed to the dead-letter topic, counts it and logs it."""

    def __init__(self, topic: TopicT, recorder: Recorder) -> None:
        self.topic = topic
        self.recorder = recorder

    async def reject(self, event: EventT, error: Exception, element: tuple[int, Any] | None = None) -> str:
        """Dead-letter ``event`` (or its batch ``element``: index, decoded value) with ``error`` as its
        reason; returns the reason label. An ``InvalidEvent`` names the field and the problem; any other
        error is a processing error (a bug): its traceback is logged."""
        msg = event.message
        where = f"{msg.topic}[{msg.partition}]@{msg.offset}" + ("" if element is None else f" element {element[0]}")
        if isinstance(error, InvalidEvent):
            field, problem, label = error.field, error.problem, error.field
        else:
            log.error("failed to process %s", where, exc_info=error)
            field, problem, label = "$", f"{type(error).__name__}: {error}", "processing_error"
        headers = {
            "pw-reason": f"{field}: {problem}"[:1000].encode(),
            "pw-field": field.encode(),
            "pw-source-topic": msg.topic.encode(),
            "pw-source-partition": str(msg.partition).encode(),
            "pw-source-offset": str(msg.offset).encode(),
        }
        key: str | bytes | None = msg.key
        value = msg.value if msg.value is not None else b""
        if element is not None:
            headers["pw-batch-index"] = str(element[0]).encode()
            value = orjson.dumps(element[1])
            key = _element_key(element[1]) or key
        await self.topic.send(key=key, value=value, headers=headers)
        log.warning("dead-lettered %s: %s", where, headers["pw-reason"].decode())
        self.recorder.observe_dead_letter(msg.topic, label)
        return label

    async def reject_push(self, body: bytes, *, source: str, endpoint: str, problems: Sequence[tuple[str, str]],
                          whole: bool, key: str | None = None, request_headers: Mapping[str, str] | None = None,
                          timeout: float | None = None) -> None:
        """Dead-letter an HTTP push (not a Kafka record) byte for byte: ``problems`` are (field, problem), the
        first one the reason; ``whole`` says whether the push was rejected whole or only some of its elements
        (the rest was taken). ``request_headers`` are the ones a replay needs (content type, the vendor's
        signature): replaying is posting the value to ``endpoint`` again with them. Returns once the broker has
        the record (raises if it did not acknowledge within ``timeout``)."""
        field, problem = problems[0] if problems else ("$", "rejected")
        headers = {
            "pw-reason": f"{field}: {problem}"[:1000].encode(),
            "pw-field": field[:200].encode(),
            "pw-source": source.encode(),
            "pw-endpoint": endpoint.encode(),
            "pw-rejected": (b"push" if whole else str(len(problems)).encode()),
            "pw-problems": "\n".join(f"{f}: {p}" for f, p in problems[:_PROBLEMS_KEPT])[:4000].encode(),
        }
        for name, value in (request_headers or {}).items():
            headers[f"pw-http-{name.lower()}"] = _header_bytes(value[:1000])
        fut = await self.topic.send(key=key, value=body, headers=headers, force=True)
        await asyncio.wait_for(asyncio.ensure_future(fut), timeout)
        log.warning("dead-lettered a %s push (%d bytes, %s): %s", source, len(body),
                    "whole" if whole else f"{len(problems)} element(s)", headers["pw-reason"].decode())
        self.recorder.observe_dead_letter_push(source, "push" if whole else "element")


def _header_bytes(value: str) -> bytes:
    """A request header's value as it came (the web server decoded undecodable bytes as surrogates)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


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
