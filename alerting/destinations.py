"""Where alerts go: a generic JSON webhook, DingTalk / WeCom / Feishu / Slack group robots, a Kafka topic.

Each destination turns one envelope (one issue, a digest of several, or a lane incident) into the body its
platform expects, sends it once, and raises :class:`DeliveryError` when the platform did not take it. The
router owns retries, backoff and rate limits; a destination only knows its wire format. ``body`` is pure,
so the formats are tested without a network.

The chat robots answer HTTP 200 even when they refuse a message (bad signature, too many messages a
minute), with the verdict in the JSON body: that verdict is checked, not just the status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import orjson

from config import Labels

from .config import DestinationConfig, severity_rank
from .outbox import Envelope
from .render import Description, describe, fit

log = logging.getLogger("parcelwatch.alerting")

# send(topic, key, value): e.g. ``lambda t, k, v: app.producer.send_and_wait(t, k, v)``; no Kafka client here.
KafkaSend = Callable[[str, bytes | None, bytes], Awaitable[Any]]
SessionProvider = Callable[[], aiohttp.ClientSession]

# Platform message limits, with some room: WeCom markdown 4096 bytes, DingTalk and Feishu about 20 KB a
# request, Slack 3000 characters a section and 50 blocks a message.
WECOM_MAX_BYTES = 4000
DINGTALK_MAX_BYTES = 18000
FEISHU_MAX_BYTES = 18000
SLACK_SECTION_CHARS = 2900
SLACK_MAX_SECTIONS = 45
# Error codes the robots use for "too many messages": wait a minute before the next try.
THROTTLED = {"dingtalk": {130101}, "wecom": {45009}, "feishu": {11232, 9499}}


class DeliveryError(Exception):
    """The destination did not take the message; ``retry_after`` is the wait it asked for, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Destination:
    type = "base"

    def __init__(self, config: DestinationConfig, labels: Labels) -> None:
        self.config = config
        self.name = config.name
        self.labels = labels

    def body(self, envelope: Envelope, now: float) -> Any:
        raise NotImplementedError

    async def send(self, envelope: Envelope) -> None:
        raise NotImplementedError

    def describe(self, envelope: Envelope) -> Description:
        return describe(envelope["items"], self.labels)


def _json_body(envelope: Envelope) -> Any:
    """A route with a digest always sends a list (of one, too), so each receiver sees one shape per route."""
    items = envelope["items"]
    return list(items) if envelope.get("digest") else items[0]


def markdown(d: Description, max_bytes: int) -> str:
    return f"### {d.title}\n\n" + "\n".join(f"- {line}" for line in fit(d.lines, max_bytes - len(d.title.encode()) - 16, sep="\n- "))


def plain(d: Description, max_bytes: int) -> str:
    return d.title + "\n" + "\n".join(fit(d.lines, max_bytes - len(d.title.encode()) - 8))


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    raw = resp.headers.get("Retry-After")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: rare for webhooks, the backoff applies instead


class HttpDestination(Destination):
    def __init__(self, config: DestinationConfig, labels: Labels, session: SessionProvider) -> None:
        super().__init__(config, labels)
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)

    def url(self, now: float) -> str:
        assert self.config.url is not None
        return self.config.url

    def headers(self, envelope: Envelope) -> dict[str, str]:
        return {"Content-Type": "application/json; charset=utf-8"}

    def check(self, text: str) -> None:
        """Raise DeliveryError when a 2xx answer still says the message was refused."""

    async def send(self, envelope: Envelope) -> None:
        now = time.time()
        payload = orjson.dumps(self.body(envelope, now))
        try:
            async with self._session().post(
                self.url(now), data=payload, headers=self.headers(envelope), timeout=self._timeout
            ) as resp:
                text = await resp.text(errors="replace")
                if resp.status == 429 or resp.status >= 300:
                    raise DeliveryError(f"HTTP {resp.status}: {text[:200]}", retry_after=_retry_after(resp))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from exc
        self.check(text)

    def _check_code(self, text: str, *fields: str) -> None:
        try:
            answer = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            raise DeliveryError(f"unexpected answer: {text[:200]}") from None
        if not isinstance(answer, dict):
            raise DeliveryError(f"unexpected answer: {text[:200]}")
        for f in fields:
            code = answer.get(f)
            if code is not None and code != 0:
                throttled = code in THROTTLED.get(self.type, ())
                msg = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or ""
                raise DeliveryError(f"{self.type} refused the message: {f}={code} {msg}"[:300], retry_after=60.0 if throttled else None)


class WebhookDestination(HttpDestination):
    """A JSON POST of the issue (or, for a digest route, the list of issues) as the stream emitted it."""

    type = "webhook"

    def body(self, envelope: Envelope, now: float) -> Any:
        return _json_body(envelope)

    def headers(self, envelope: Envelope) -> dict[str, str]:
        return {
            **super().headers(envelope),
            "X-Parcelwatch-Route": str(envelope.get("route", "")),
            # The same on every retry: a receiver that saw a timeout-then-retry can drop the duplicate.
            "X-Parcelwatch-Message-Id": str(envelope.get("id", "")),
            **self.config.headers,
        }


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk robot 加签: base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")), URL-encoded."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu custom bot 签名校验: base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")); the key is the string."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class DingTalkDestination(HttpDestination):
    type = "dingtalk"

    def url(self, now: float) -> str:
        url = super().url(now)
        if not self.config.secret:
            return url
        # Signed at each attempt: DingTalk refuses a timestamp more than an hour old.
        ts = int(now * 1000)
        return f"{url}{'&' if '?' in url else '?'}timestamp={ts}&sign={dingtalk_sign(self.config.secret, ts)}"

    def body(self, envelope: Envelope, now: float) -> Any:
        d = self.describe(envelope)
        text = markdown(d, DINGTALK_MAX_BYTES)
        if self.config.at_mobiles:
            # DingTalk only notifies the people whose @mobile also appears in the text.
            text += "\n\n" + " ".join(f"@{m}" for m in self.config.at_mobiles)
        return {
            "msgtype": "markdown",
            "markdown": {"title": d.title, "text": text},
            "at": {"atMobiles": list(self.config.at_mobiles), "isAtAll": self.config.at_all},
        }

    def check(self, text: str) -> None:
        self._check_code(text, "errcode")


class WeComDestination(HttpDestination):
    """企业微信 group robot (群机器人)."""

    type = "wecom"

    def body(self, envelope: Envelope, now: float) -> Any:
        return {"msgtype": "markdown", "markdown": {"content": markdown(self.describe(envelope), WECOM_MAX_BYTES)}}

    def check(self, text: str) -> None:
        self._check_code(text, "errcode")


class FeishuDestination(HttpDestination):
    """飞书 custom bot: ``format`` text, post (rich text) or interactive (a card with a coloured header)."""

    type = "feishu"
    CARD_COLOURS: Mapping[str, str] = {"critical": "red", "high": "orange", "medium": "yellow", "low": "blue"}

    def body(self, envelope: Envelope, now: float) -> Any:
        d = self.describe(envelope)
        fmt = self.config.format
        body: dict[str, Any]
        if fmt == "post":
            lines = fit(d.lines, FEISHU_MAX_BYTES - len(d.title.encode()))
            body = {"msg_type": "post", "content": {"post": {"zh_cn": {
                "title": d.title, "content": [[{"tag": "text", "text": line}] for line in lines]}}}}
        elif fmt == "interactive":
            top = max((str(i.get("severity")) for i in envelope["items"]), key=severity_rank)
            body = {"msg_type": "interactive", "card": {
                "config": {"wide_screen_mode": True},
                "header": {"title": {"tag": "plain_text", "content": d.title}, "template": self.CARD_COLOURS.get(top, "grey")},
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(
                    fit(d.lines, FEISHU_MAX_BYTES - len(d.title.encode())))}}],
            }}
        else:
            body = {"msg_type": "text", "content": {"text": plain(d, FEISHU_MAX_BYTES)}}
        if self.config.secret:
            # Signed at each attempt: Feishu refuses a timestamp more than an hour away from its clock.
            ts = int(now)
            body = {"timestamp": str(ts), "sign": feishu_sign(self.config.secret, ts), **body}
        return body

    def check(self, text: str) -> None:
        # Current bots answer {"code": 0, ...}; older ones {"StatusCode": 0, ...}.
        self._check_code(text, "code", "StatusCode")


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackDestination(HttpDestination):
    """Slack incoming webhook: ``text`` (the notification and fallback) plus blocks."""

    type = "slack"

    def body(self, envelope: Envelope, now: float) -> Any:
        d = self.describe(envelope)
        sections: list[str] = []
        current = ""
        for line in fit(d.lines, SLACK_SECTION_CHARS * SLACK_MAX_SECTIONS * 3):
            entry = "• " + _slack_escape(line)
            if len(entry) > SLACK_SECTION_CHARS:
                entry = entry[: SLACK_SECTION_CHARS - 1] + "…"
            if current and len(current) + 1 + len(entry) > SLACK_SECTION_CHARS:
                sections.append(current)
                current = ""
            current = f"{current}\n{entry}" if current else entry
        if current:
            sections.append(current)
        if len(sections) > SLACK_MAX_SECTIONS:
            left = len(sections) - SLACK_MAX_SECTIONS + 1
            sections = [*sections[: SLACK_MAX_SECTIONS - 1], f"……另有 {left} 段未列出，请在问题队列中查看"]
        blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": d.title[:150]}}]
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in sections]
        return {"text": _slack_escape(d.title), "blocks": blocks}

    def check(self, text: str) -> None:
        if text.strip() != "ok":
            raise DeliveryError(f"slack answered {text[:200]!r}")


class KafkaDestination(Destination):
    """A Kafka topic, through an injected ``send(topic, key, value)``: the same JSON as the webhook."""

    type = "kafka"

    def __init__(self, config: DestinationConfig, labels: Labels, send: KafkaSend) -> None:
        super().__init__(config, labels)
        self._send = send

    def body(self, envelope: Envelope, now: float) -> Any:
        return _json_body(envelope)

    def key(self, envelope: Envelope) -> bytes:
        items = envelope["items"]
        # One issue keeps its issue key (its updates land on the same partition, in order); a digest the route.
        return str(items[0].get("issue_key") if not envelope.get("digest") else envelope.get("route")).encode()

    async def send(self, envelope: Envelope) -> None:
        assert self.config.topic is not None
        try:
            await self._send(self.config.topic, self.key(envelope), orjson.dumps(self.body(envelope, time.time())))
        except Exception as exc:  # the injected producer may raise anything; it is one failed attempt
            raise DeliveryError(f"kafka send failed: {type(exc).__name__}: {exc}"[:300]) from exc


HTTP_TYPES: Mapping[str, type[HttpDestination]] = {
    "webhook": WebhookDestination,
    "dingtalk": DingTalkDestination,
    "wecom": WeComDestination,
    "feishu": FeishuDestination,
    "slack": SlackDestination,
}


def build(config: DestinationConfig, labels: Labels, session: SessionProvider, kafka_send: KafkaSend | None) -> Destination:
    if config.type == "kafka":
        if kafka_send is None:
            raise ValueError(f"destination {config.name!r} is a kafka topic, but the router was given no kafka_send")
        return KafkaDestination(config, labels, kafka_send)
    return HTTP_TYPES[config.type](config, labels, session)

