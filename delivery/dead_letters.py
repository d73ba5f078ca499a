"""Dead letters: a record (or one element of a batch record) that cannot be processed goes to the dead-letter
topic with its reason, and the worker goes on.

The value is the original bytes (so nothing is lost and it can be fixed and replayed); headers carry the
reason (field and problem) and where it came from (topic, partition, offset). A bad element of a batch
record (``batch_records.py``) goes alone, re-encoded as the JSON object it was, with its index in
``pw-batch-index``: the other elements of the record are processed as usual. Logs say where and why,
never the payload (it may carry buyer data), and reasons never repeat a value (``domain/events.py``).

A value too large to be sent again (a record of about a megabyte: with its headers it would exceed the
producer's request limit, and the send would raise) is replaced by a bounded stand-in: the reason, its size
and digest, and where the original is (topic, partition, offset, batch index), so it can be fetched from
there. Nothing a dead letter does raises into the agent that rejects: a dead letter the broker did not take
is recorded as a failed send, which stops every offset commit past the record (``delivery/checkpoint.py``):
a restart processes it again instead of losing it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from faust.types import EventT, TopicT

from domain.events import InvalidEvent
from telemetry.recorder import Recorder

from .framework import AFTER_A_FAILED_SEND, commits_stopped, note_send_failure

log = logging.getLogger("parcelwatch.deadletter")
_PROBLEMS_KEPT = 20  # of a push's rejected elements, the first ones named in its dead letter's headers

# A dead letter's value is kept whole up to this size: well under the producer's request limit (Faust's
# producer_max_request_size, 1,000,000 bytes) and the broker's message.max.bytes with the headers added.
MAX_VALUE_BYTES = 512 * 1024
MAX_KEY_BYTES = 1024
# The largest HTTP push the endpoints take: one refused for its content goes to the dead-letter topic whole
# (``reject_push``), so it must fit the producer's request limit with its headers (reason, problems, the
# vendor's request headers) and the record's framing added.
MAX_PUSH_BYTES = 900_000


@dataclass
class DeadLetterCounts:
    """What ``/healthz`` shows of the dead letters since the worker started."""

    sent: int = 0
    values_omitted: int = 0  # too large: sent as a bounded stand-in pointing at the original
    failed: int = 0  # the dead letter itself could not be sent (the record will be processed again)
    last_omitted: str = ""  # where the last too-large original is
    last_failure: str = ""


class DeadLetters:
    """Sends what cannot be processed to the dead-letter topic, counts it and logs it."""

    def __init__(self, topic: TopicT, recorder: Recorder, max_value_bytes: int = MAX_VALUE_BYTES) -> None:
        self.topic = topic
        self.recorder = recorder
        self.max_value_bytes = max_value_bytes
        self.counts = DeadLetterCounts()

    async def reject(self, event: EventT, error: Exception, element: tuple[int, Any] | None = None) -> str | None:
        """Dead-letter ``event`` (or its batch ``element``: index, decoded value) with ``error`` as its
        reason; returns the reason label. An ``InvalidEvent`` names the field and the problem; any other
        error is a processing error (a bug): its traceback is logged. Never raises.

        Once a send has failed nothing is dead-lettered (None): no offset is committed past the failure, so
        the record is processed again after the worker's restart, and dead-lettered then if it is bad. The
        error is most often that failure itself (the record's issue events not acknowledged): a dead letter
        would set a good record aside, for on-call to read as bad input."""
        msg = event.message
        where = f"{msg.topic}[{msg.partition}]@{msg.offset}" + ("" if element is None else f" element {element[0]}")
        if commits_stopped(self.topic.app):
            log.error("not dead-lettered %s (%s): a record failed to send, so it is processed again when the worker "
                      "has started again", where, type(error).__name__)
            return None
        if isinstance(error, InvalidEvent):
            field_, problem, label = error.field, error.problem, error.field
        else:
            log.error("failed to process %s", where, exc_info=error)
            # (The type only: an exception's text may quote the data it failed on.)
            field_, problem, label = "$", f"processing error ({type(error).__name__}); see the worker log", "processing_error"
        headers = {
            "pw-reason": f"{field_}: {problem}"[:1000].encode(),
            "pw-field": field_.encode(),
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
        if key is not None and len(key) > MAX_KEY_BYTES:
            key = None  # (where the original is says which record it was)
        value = self._bounded(value, headers, where, msg.topic)
        await self._send(key, value, headers, where, msg.topic)
        log.warning("dead-lettered %s: %s", where, headers["pw-reason"].decode())
        self.recorder.observe_dead_letter(msg.topic, label)
        return label

    def _bounded(self, value: bytes, headers: dict[str, bytes], where: str, source_topic: str) -> bytes:
        """``value``, or when it is too large to be sent again, a small JSON stand-in saying where it is."""
        if len(value) <= self.max_value_bytes:
            return value
        headers["pw-value-omitted"] = str(len(value)).encode()
        source = {"topic": headers["pw-source-topic"].decode(), "partition": int(headers["pw-source-partition"]),
                  "offset": int(headers["pw-source-offset"])}
        if "pw-batch-index" in headers:
            source["batch_index"] = int(headers["pw-batch-index"])
        self.counts.values_omitted += 1
        self.counts.last_omitted = where
        self.recorder.observe_dead_letter_value_omitted(source_topic)
        return orjson.dumps({
            "value_omitted": f"{len(value)} bytes, over the {self.max_value_bytes} a dead letter carries; "
                             "fetch the original from source",
            "bytes": len(value), "sha256": hashlib.sha256(value).hexdigest(), "source": source,
        })

    async def _send(self, key: str | bytes | None, value: bytes, headers: dict[str, bytes], where: str,
                    source_topic: str) -> None:
        counts = self.counts
        try:
            await self.topic.send(key=key, value=value, headers=headers)
        except Exception as exc:  # noqa: BLE001 - the agent that rejects must go on; the record is not lost
            counts.failed += 1
            counts.last_failure = f"{where}: {type(exc).__name__}"
            note_send_failure(self.topic.app, f"{self.topic.get_topic_name()}: {type(exc).__name__}: {exc}")
            log.error("could not dead-letter %s (%s): %s", where, type(exc).__name__, AFTER_A_FAILED_SEND)
            self.recorder.observe_dead_letter_failed(source_topic)
            return
        counts.sent += 1

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
    for field_ in ("order_id", "subject"):
        if isinstance(doc.get(field_), str):
            return str(doc[field_])[:200]
    return None
