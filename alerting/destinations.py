"""Where alerts go: a generic JSON webhook, DingTalk / WeCom / Feishu / Slack group robots, a Kafka topic.

Each destination turns one envelope (one issue, a digest of several, or a lane incident) into the body its
platform expects, sends it once, and raises :class:`DeliveryError` when the platform did not take it. The
router owns retries, backoff and rate limits; a destination only knows its wire format and what the
platform's answers mean. ``body`` is pure, so the formats are tested without a network.

Sizes are measured on what is sent (the encoded request, or the field the platform limits), per platform
(``vendors.py``): the lines are cut to the most that fit, with a note of how many were left out and a link
to the rest in the staff page, rather than having the robot refuse the whole message.

The chat robots answer HTTP 200 even when they refuse a message (bad signature, missing keyword, too many
messages a minute), with the verdict in the JSON body: that verdict is checked, not just the status, and
told apart: throttled (wait the platform's penalty, then send it again), refused for good (a bad request,
too large, keyword, signature: set aside at once), or the server's trouble (retried with backoff).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import orjson

from config import Labels, without_secrets

from .config import DestinationConfig, severity_rank
from .outbox import Envelope
from .render import Description, describe, largest_fitting, more_note
from .vendors import (
    DINGTALK_MAX_REQUEST_BYTES,
    FEISHU_MAX_REQUEST_BYTES,
    SLACK_BLOCKS_CHARS,
    SLACK_HEADER_CHARS,
    SLACK_MAX_BLOCKS,
    SLACK_SECTION_CHARS,
    VENDORS,
    WECOM_MARKDOWN_MAX_BYTES,
    WECOM_TEXT_MAX_BYTES,
)

log = logging.getLogger("parcelwatch.alerting")

# send(topic, key, value): e.g. ``lambda t, k, v: app.producer.send_and_wait(t, k, v)``; no Kafka client here.
KafkaSend = Callable[[str, bytes | None, bytes], Awaitable[Any]]
SessionProvider = Callable[[], aiohttp.ClientSession]

WECOM_MAX_BYTES = WECOM_MARKDOWN_MAX_BYTES
TRANSIENT, THROTTLED, REFUSED = "transient", "throttled", "refused"


class DeliveryError(Exception):
    """The destination did not take the message.

    ``kind``: ``transient`` (try again with backoff), ``throttled`` (wait ``retry_after``, else the platform's
    penalty, then send it again) or ``refused`` (never accepted as it is: set aside); ``reason``: a bounded
    label of why it was refused; ``sent``: False when the request never reached the server (its rate-limit
    slot can be given back)."""

    def __init__(self, message: str, *, kind: str = TRANSIENT, reason: str = "other", retry_after: float | None = None,
                 sent: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason
        self.retry_after = retry_after
        self.sent = sent


class Destination:
    type = "base"

    def __init__(self, config: DestinationConfig, labels: Labels) -> None:
        self.config = config
        self.name = config.name
        self.labels = labels

    @property
    def robot(self) -> str:
        """Who counts our messages: the robot behind the URL (or the topic). Two destination names for one
        robot share its limits; the id names no token."""
        target = f"{self.type}|{(self.config.url or '').split('#')[0]}|{self.config.topic or ''}"
        return hashlib.sha256(target.encode()).hexdigest()[:16]

    def body(self, envelope: Envelope, now: float) -> Any:
        raise NotImplementedError

    async def send(self, envelope: Envelope) -> None:
        raise NotImplementedError

    def describe(self, envelope: Envelope) -> Description:
        c = self.config
        prefix = "".join(f"{p} " for p in (c.keyword, f"[{c.environment}]" if c.environment else None) if p)
        return describe(envelope["items"], self.labels, prefix=prefix, base_url=c.base_url)


def _json_body(envelope: Envelope) -> Any:
    """A route with a digest always sends a list (of one, too), so each receiver sees one shape per route."""
    items = envelope["items"]
    return list(items) if envelope.get("digest") else items[0]


def _encoded(body: Any) -> int:
    return len(orjson.dumps(body))


def error_text(exc: BaseException) -> str:
    """What a failed delivery logs and keeps: the exception's type and message, each URL in it cut to its host
    (aiohttp's messages quote the robot's URL, token and all, or the proxy's with its password)."""
    return without_secrets(f"{type(exc).__name__}: {exc}")[:300]


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    for header in ("Retry-After", "x-ogw-ratelimit-reset"):
        raw = resp.headers.get(header)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw))
        except ValueError:
            continue  # an HTTP date: rare for webhooks, the platform's penalty applies instead
    return None


class Mentions:
    """Who one message mentions: nobody on a message of resolves only, nobody below ``min_severity``; @all only
    with a critical issue in it."""

    def __init__(self, config: DestinationConfig, d: Description, now: float) -> None:
        m = config.mentions
        wanted = d.top_severity is not None and severity_rank(d.top_severity) >= severity_rank(m.min_severity or "low")
        self.users, self.mobiles = m.people(now) if wanted else ((), ())
        self.all = bool(m.all_for_critical and d.critical)

    def __bool__(self) -> bool:
        return bool(self.users or self.mobiles or self.all)


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

    def refused_status(self, status: int, text: str) -> DeliveryError | None:
        """A 4xx answer that refuses this message for good (None: retried)."""
        if status in (400, 413, 422):
            return DeliveryError(f"HTTP {status}: {text[:200]}", kind=REFUSED, reason="too_large" if status == 413 else "bad_request")
        return None

    async def send(self, envelope: Envelope) -> None:
        now = time.time()
        payload = orjson.dumps(self.body(envelope, now))
        try:
            async with self._session().post(
                self.url(now), data=payload, headers=self.headers(envelope), timeout=self._timeout, proxy=self.config.proxy,
            ) as resp:
                text = await resp.text(errors="replace")
                if resp.status == 429:
                    raise DeliveryError(f"HTTP 429: {text[:200]}", kind=THROTTLED, retry_after=_retry_after(resp))
                if resp.status >= 300:
                    refused = self.refused_status(resp.status, text) if 400 <= resp.status < 500 and resp.status != 408 else None
                    raise refused or DeliveryError(f"HTTP {resp.status}: {text[:200]}", retry_after=_retry_after(resp))
        except aiohttp.ClientConnectorError as exc:  # never reached the server (or the proxy): nothing was counted
            raise DeliveryError(error_text(exc), sent=False) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(error_text(exc)) from exc
        self.check(text)

    def _check_code(self, text: str, *fields: str) -> None:
        try:
            answer = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            raise DeliveryError(f"unexpected answer: {text[:200]}") from None
        if not isinstance(answer, dict):
            raise DeliveryError(f"unexpected answer: {text[:200]}")
        vendor = VENDORS[self.type]
        for f in fields:
            code = answer.get(f)
            if code is None or code == 0:
                continue
            msg = str(answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or "")
            detail = f"{self.type} refused the message: {f}={code} {msg}"[:300]
            if code in vendor.throttled:
                raise DeliveryError(detail, kind=THROTTLED)
            if code in vendor.transient:
                raise DeliveryError(detail)
            raise DeliveryError(detail, kind=REFUSED, reason=self.refusal_reason(code, msg))

    def refusal_reason(self, code: Any, msg: str) -> str:
        return VENDORS[self.type].refusals.get(code, "other") if isinstance(code, int) else "other"


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


# Text from outside (a scan's place, an order id, a shop) must not become a link, a mention or a tag in a
# markdown message: the characters that make them go as their full-width look-alikes.
_MARKDOWN_SAFE = str.maketrans({"[": "［", "]": "］", "<": "＜", ">": "＞"})


def markdown_safe(text: str) -> str:
    return text.translate(_MARKDOWN_SAFE)


def markdown(d: Description, lines: Sequence[str], left: int, mention: str = "") -> str:
    """DingTalk / WeCom markdown: a heading, one list item a line, the note of what was left out, the link."""
    parts = [f"### {markdown_safe(d.title)}", "", *(f"- {markdown_safe(line)}" for line in lines)]
    if left:
        parts.append(f"- {more_note(left)}")
    if d.link:
        parts += ["", f"[{d.link_text}]({d.link})"]
    if mention:
        parts += ["", mention]
    return "\n".join(parts)


def plain(d: Description, lines: Sequence[str], left: int, mention: str = "") -> str:
    parts = [d.title, *lines]
    if left:
        parts.append(more_note(left))
    if d.link:
        parts.append(f"{d.link_text}：{d.link}")
    if mention:
        parts.append(mention)
    return "\n".join(parts)


def _fitted(d: Description, build: Callable[[Sequence[str], int], Any], size: Callable[[Any], int], limit: int) -> Any:
    """``build(lines, left_out)`` with as many of ``d.lines`` as keep ``size(body)`` within ``limit``."""
    n = len(d.lines)
    k = largest_fitting(n, lambda k: size(build(d.lines[:k], n - k)) <= limit)
    return build(d.lines[:k], n - k)


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
        who = Mentions(self.config, d, now)
        # DingTalk notifies only the people whose @mobile / @userId also appears in the text.
        mention = " ".join([*(f"@{m}" for m in who.mobiles), *(f"@{u}" for u in who.users)])
        at: dict[str, Any] = {"atMobiles": list(who.mobiles), "isAtAll": who.all}
        if who.users:
            at["atUserIds"] = list(who.users)

        def build(lines: Sequence[str], left: int) -> dict[str, Any]:
            return {"msgtype": "markdown", "markdown": {"title": d.title, "text": markdown(d, lines, left, mention)}, "at": at}

        return _fitted(d, build, _encoded, DINGTALK_MAX_REQUEST_BYTES)

    def check(self, text: str) -> None:
        self._check_code(text, "errcode")

    def refusal_reason(self, code: Any, msg: str) -> str:
        if code == 310000:  # one code for every security refusal; its errmsg tells which
            low = msg.lower()
            return "signature" if "sign" in low else "ip_not_allowed" if "ip" in low.split() or "whitelist" in low else "keyword"
        return super().refusal_reason(code, msg)


class WeComDestination(HttpDestination):
    """企业微信 group robot (群机器人): markdown, or text when @all is wanted (markdown cannot @all)."""

    type = "wecom"

    def body(self, envelope: Envelope, now: float) -> Any:
        d = self.describe(envelope)
        who = Mentions(self.config, d, now)
        if who.all:
            def text(lines: Sequence[str], left: int) -> dict[str, Any]:
                return {"msgtype": "text", "text": {"content": plain(d, lines, left), "mentioned_list": [*who.users, "@all"]}}

            return _fitted(d, text, lambda b: len(b["text"]["content"].encode()), WECOM_TEXT_MAX_BYTES)
        mention = " ".join(f"<@{u}>" for u in who.users)

        def build(lines: Sequence[str], left: int) -> dict[str, Any]:
            return {"msgtype": "markdown", "markdown": {"content": markdown(d, lines, left, mention)}}

        return _fitted(d, build, lambda b: len(b["markdown"]["content"].encode()), WECOM_MARKDOWN_MAX_BYTES)

    def check(self, text: str) -> None:
        self._check_code(text, "errcode")


class FeishuDestination(HttpDestination):
    """飞书 custom bot: ``format`` text, post (rich text) or interactive (a card with a coloured header)."""

    type = "feishu"
    CARD_COLOURS: Mapping[str, str] = {"critical": "red", "high": "orange", "medium": "yellow", "low": "blue"}

    def body(self, envelope: Envelope, now: float) -> Any:
        d = self.describe(envelope)
        who = Mentions(self.config, d, now)
        people = [*who.users, *(["all"] if who.all else [])]
        fmt = self.config.format
        sign: dict[str, Any] = {}
        if self.config.secret:
            # Signed at each attempt: Feishu refuses a timestamp more than an hour away from its clock.
            ts = int(now)
            sign = {"timestamp": str(ts), "sign": feishu_sign(self.config.secret, ts)}

        def build(lines: Sequence[str], left: int) -> dict[str, Any]:
            if fmt == "post":
                rows: list[list[dict[str, Any]]] = [[{"tag": "text", "text": line}] for line in lines]
                if left:
                    rows.append([{"tag": "text", "text": more_note(left)}])
                if d.link:
                    rows.append([{"tag": "a", "text": d.link_text, "href": d.link}])
                if people:
                    rows.append([{"tag": "at", "user_id": p} for p in people])
                return {**sign, "msg_type": "post", "content": {"post": {"zh_cn": {"title": d.title, "content": rows}}}}
            if fmt == "interactive":
                text = "\n".join([*map(markdown_safe, lines), *([more_note(left)] if left else [])])
                if d.link:
                    text += f"\n[{d.link_text}]({d.link})"
                if people:
                    text += "\n" + " ".join(f"<at id={p}></at>" for p in people)
                elements: list[dict[str, Any]] = []
                if self.config.keyword:  # the keyword check reads the card's text, not only its header
                    elements.append({"tag": "div", "text": {"tag": "plain_text", "content": self.config.keyword}})
                elements.append({"tag": "div", "text": {"tag": "lark_md", "content": text}})
                return {**sign, "msg_type": "interactive", "card": {
                    "config": {"wide_screen_mode": True},
                    "header": {"title": {"tag": "plain_text", "content": d.title},
                               "template": self.CARD_COLOURS.get(d.top_severity or "", "grey")},
                    "elements": elements,
                }}
            mention = " ".join(f'<at user_id="{p}">{"所有人" if p == "all" else ""}</at>' for p in people)
            return {**sign, "msg_type": "text", "content": {"text": plain(d, lines, left, mention)}}

        return _fitted(d, build, _encoded, FEISHU_MAX_REQUEST_BYTES)

    def check(self, text: str) -> None:
        # Current bots answer {"code": 0, ...}; older ones {"StatusCode": 0, ...}.
        self._check_code(text, "code", "StatusCode")

    def refused_status(self, status: int, text: str) -> DeliveryError | None:
        if status == 400 and "99991400" in text:  # older OpenAPI gateways throttle with HTTP 400
            return DeliveryError(f"HTTP 400: {text[:200]}", kind=THROTTLED)
        return super().refused_status(status, text)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackDestination(HttpDestination):
    """Slack incoming webhook: ``text`` (the notification and fallback) plus blocks."""

    type = "slack"

    def body(self, envelope: Envelope, now: float) -> Any:
        d = self.describe(envelope)
        who = Mentions(self.config, d, now)
        mention = " ".join([*(f"<@{u}>" for u in who.users), *(["<!channel>"] if who.all else [])])
        title = _slack_escape(d.title)

        def build(lines: Sequence[str], left: int) -> dict[str, Any]:
            entries = [f"• {_slack_escape(line)}"[:SLACK_SECTION_CHARS] for line in lines]
            if left:
                entries.append(f"• {more_note(left)}")
            sections: list[str] = []
            for entry in entries:
                if sections and len(sections[-1]) + 1 + len(entry) <= SLACK_SECTION_CHARS:
                    sections[-1] += "\n" + entry
                else:
                    sections.append(entry)
            if d.link:
                sections.append(f"<{d.link}|{d.link_text}>")
            if mention:
                sections.append(mention)
            blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": d.title[:SLACK_HEADER_CHARS]}}]
            blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in sections]
            return {"text": f"{title} {mention}" if mention else title, "blocks": blocks}

        def size(body: dict[str, Any]) -> int:
            if len(body["blocks"]) > SLACK_MAX_BLOCKS:
                return SLACK_BLOCKS_CHARS + 1
            return sum(len(b["text"]["text"]) for b in body["blocks"])

        return _fitted(d, build, size, SLACK_BLOCKS_CHARS)

    def check(self, text: str) -> None:
        if text.strip() != "ok":
            raise DeliveryError(f"slack answered {text[:200]!r}")

    def refused_status(self, status: int, text: str) -> DeliveryError | None:
        reason = {400: "bad_request", 403: "forbidden", 404: "not_found", 410: "not_found", 413: "too_large"}.get(status)
        if reason is None:
            return None
        if "too_long" in text or "too_many" in text:
            reason = "too_large"
        return DeliveryError(f"slack answered HTTP {status}: {text[:200]}", kind=REFUSED, reason=reason)


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
