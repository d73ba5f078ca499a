"""Each aggregator's registration API: the request for a parcel (or a batch), and what its answer means.

Pure: ``request`` builds an ``HttpRequest``, ``results`` reads the vendor's answer into one ``Result`` per
parcel. The registrar (``registrar.py``) sends the requests, at the vendor's rate, and acts on the outcomes:

- ``registered`` / ``already``: done (the vendor tracks the parcel; "already subscribed" is success);
- ``retry``: a temporary failure (the vendor's server error, its rate limit, a timeout): try again later;
- ``rejected``: the vendor refuses this parcel (bad number, carrier or missing field): staff must look;
- ``account``: the vendor refuses our key or account: no parcel is at fault, every one waits until an
  operator fixes the key (``/healthz`` shows it), and none is reported to staff for it.

What each vendor documents, field by field, is cited at its class. No buyer data is sent: the order id, the
destination province and city, and for SF the last four digits of the shop's own sender phone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from urllib.parse import urlencode

from .carriers import vendor_code

REGISTERED, ALREADY, RETRY, REJECTED, ACCOUNT = "registered", "already", "retry", "rejected", "account"
OUTCOMES = (REGISTERED, ALREADY, RETRY, REJECTED, ACCOUNT)
MAX_MESSAGE = 200


@dataclass(frozen=True, slots=True)
class Parcel:
    """A parcel to register, with what the order said about it (never the buyer's name, phone or street)."""

    carrier: str
    number: str
    shop: str
    order_id: str | None = None
    platform: str | None = None
    origin_province: str | None = None
    destination_province: str | None = None
    destination_city: str | None = None

    @property
    def key(self) -> str:
        return f"{self.carrier}:{self.number}"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: str
    code: str  # the vendor's own code ("501", "4003", "-18019901", "HTTP 503", "timeout")
    message: str = ""  # the vendor's text, cut short (never holds buyer data: we sent none)
    retry_after: float | None = None  # seconds, when the vendor said how long to wait

    @property
    def ok(self) -> bool:
        return self.outcome in (REGISTERED, ALREADY)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Credentials:
    """The secrets of one aggregator, from the environment (``config.SUBSCRIPTION_CREDENTIALS``)."""

    key: str = field(repr=False)
    secret: str = field(default="", repr=False)  # kuaidi100 push salt; kdniao API key (the key is its business id)


class Vendor(Protocol):
    name: str
    documented_rate: float  # requests per second the vendor documents
    max_batch: int  # parcels per request

    def precheck(self, parcel: Parcel) -> Result | None:
        """A refusal known before asking (a field the vendor requires that we cannot give), else None."""
        ...

    def request(self, parcels: Sequence[Parcel]) -> HttpRequest: ...

    def results(self, parcels: Sequence[Parcel], status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Result]: ...


class Client:
    """What every vendor client is built from: the key, the vendor's address (or a test's), the shops' sender
    phones and the deployment's carrier code pins."""

    URL = ""

    def __init__(self, credentials: Credentials, endpoint: str = "", sender_phones: Mapping[str, str] | None = None,
                 carrier_codes: Mapping[str, str] | None = None) -> None:
        self.credentials = credentials
        self.url = endpoint or self.URL
        self.sender_phones = dict(sender_phones or {})
        self.carrier_codes = dict(carrier_codes or {})


def _all(parcels: Sequence[Parcel], result: Result) -> dict[str, Result]:
    return {p.key: result for p in parcels}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds a ``Retry-After`` header asks for; None without one, or with an HTTP date."""
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


def _http_failure(status: int, headers: Mapping[str, str]) -> Result | None:
    """The answers every vendor shares: rate limited, server trouble, refused credentials."""
    if status == 429:
        return Result(RETRY, "HTTP 429", "rate limited", retry_after(headers))
    if status >= 500:
        return Result(RETRY, f"HTTP {status}", "server error", retry_after(headers))
    if status in (401, 403):
        return Result(ACCOUNT, f"HTTP {status}", "the vendor refused the key")
    return None


def phone_tail(carrier: str, sender_phones: Mapping[str, str], shop: str, carriers: tuple[str, ...] = ("SF",)) -> str | None:
    """The last four digits of the shop's sender phone, for the carriers that check them (SF), else None."""
    phone = sender_phones.get(shop) if carrier in carriers else None
    return "".join(ch for ch in phone if ch.isdigit())[-4:] if phone else None


def no_phone(parcel: Parcel, sender_phones: Mapping[str, str]) -> Result | None:
    """SF gives a trace only to whoever names four digits of the sender's or recipient's phone."""
    if parcel.carrier == "SF" and not sender_phones.get(parcel.shop):
        return Result(REJECTED, "phone", f"SF needs the last four digits of a phone: set subscriptions.sender_phones.{parcel.shop}")
    return None


class Kuaidi100(Client):
    """kuaidi100 subscription ("快递信息推送服务", 订阅接口): ``POST https://poll.kuaidi100.com/poll``, form fields
    ``schema=json`` and ``param`` (JSON: ``company``, ``number``, ``key``, ``from``, ``to``, ``parameters``:
    ``callbackurl``, ``salt`` (kuaidi100 then signs each push md5(param + salt)), ``resultv2``, ``phone``).
    https://api.kuaidi100.com/document/5f0ffa8f2977d50a94e1023c

    - ``resultv2=4``: each scan of the pushes carries its advanced status code (``statusCode``: 101, 1001,
      501 ...), which ``ingest/kuaidi100.py`` maps scan by scan.
    - ``phone``: 顺丰单号必填 (the SF number needs a sender's or recipient's phone; ZTO for some accounts);
      we send the last four digits of the shop's own sender phone (``subscriptions.sender_phones``).
    - Answer ``{"result": bool, "returnCode": "...", "message": "..."}``: 200 提交成功; 501 重复订阅 (already
      tracked: success); 500 服务器错误 (temporary); 600 不是合法的订阅者 / 601 KEY已过期 (the key);
      700 订阅数据存在错误, 701 拒绝订阅的快递公司, 702 识别不到该单号对应的快递公司 (this parcel).
    - "最大提交线程数:20单/秒" (https://blog.csdn.net/kuaidi100API/article/details/116130836): 20 a second.
    """

    name = "kuaidi100"
    documented_rate = 20.0
    max_batch = 1
    URL = "https://poll.kuaidi100.com/poll"
    PHONE_CARRIERS = ("SF", "ZTO")
    CODES: ClassVar[dict[str, str]] = {
        "200": REGISTERED, "501": ALREADY, "500": RETRY, "600": ACCOUNT, "601": ACCOUNT,
        "700": REJECTED, "701": REJECTED, "702": REJECTED,
    }

    def __init__(self, credentials: Credentials, callback_url: str, endpoint: str = "",
                 sender_phones: Mapping[str, str] | None = None, carrier_codes: Mapping[str, str] | None = None) -> None:
        super().__init__(credentials, endpoint, sender_phones, carrier_codes)
        self.callback_url = callback_url

    def precheck(self, parcel: Parcel) -> Result | None:
        return no_phone(parcel, self.sender_phones)

    def param(self, parcel: Parcel) -> dict[str, Any]:
        parameters: dict[str, str] = {"callbackurl": self.callback_url, "resultv2": "4"}
        if self.credentials.secret:
            parameters["salt"] = self.credentials.secret
        tail = phone_tail(parcel.carrier, self.sender_phones, parcel.shop, self.PHONE_CARRIERS)
        if tail:
            parameters["phone"] = tail
        company = vendor_code(parcel.carrier, self.name, self.carrier_codes)
        if company is None:
            parameters["autoCom"] = "1"  # kuaidi100 then tells the company from the number; company stays empty
        doc: dict[str, Any] = {"company": company or "", "number": parcel.number, "key": self.credentials.key}
        if parcel.origin_province:
            doc["from"] = parcel.origin_province
        if parcel.destination_province:
            doc["to"] = parcel.destination_province + (parcel.destination_city or "")
        doc["parameters"] = parameters
        return doc

    def request(self, parcels: Sequence[Parcel]) -> HttpRequest:
        [parcel] = parcels
        body = urlencode({"schema": "json", "param": json.dumps(self.param(parcel), ensure_ascii=False)})
        return HttpRequest("POST", self.url, {"Content-Type": "application/x-www-form-urlencoded"}, body.encode())

    def results(self, parcels: Sequence[Parcel], status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Result]:
        failure = _http_failure(status, headers)
        if failure is not None:
            return _all(parcels, failure)
        doc = _json(body)
        if not isinstance(doc, dict) or ("returnCode" not in doc and "result" not in doc):
            return _all(parcels, Result(RETRY, f"HTTP {status}", "not kuaidi100's JSON answer"))
        code = str(doc.get("returnCode") or ("200" if doc.get("result") is True else ""))
        message = str(doc.get("message") or "")[:MAX_MESSAGE]
        return _all(parcels, Result(self.CODES.get(code, RETRY), code, message))


class AfterShip(Client):
    """AfterShip Tracking API, create a tracking: ``POST https://api.aftership.com/tracking/2025-01/trackings``,
    header ``as-api-key``, JSON body ``{"tracking_number", "slug", "order_id"}``.
    https://www.aftership.com/docs/tracking/2025-01/api/create-a-tracking

    - Errors (https://www.aftership.com/docs/tracking/quickstart/request-errors): ``meta.code`` 4003
      "Tracking already exists." (success for us); 4005/4007/4008/4009/4010/4011/4012/4017 concern this
      parcel (number, slug, a field the courier requires, undetectable courier); 401 invalid API key; 429
      rate limit (``retry-after``, ``X-RateLimit-Reset``); 5xx temporary.
    - Rate limit (https://www.aftership.com/docs/tracking/2025-01/quickstart/rate-limit): ``POST /trackings``
      20 requests a second.
    - Without a slug AfterShip detects the courier (4012 when it cannot).
    """

    name = "aftership"
    documented_rate = 20.0
    max_batch = 1
    URL = "https://api.aftership.com/tracking/2025-01/trackings"
    PARCEL_CODES = frozenset({"4001", "4005", "4007", "4008", "4009", "4010", "4011", "4012", "4017"})

    def precheck(self, parcel: Parcel) -> Result | None:
        return None

    def body(self, parcel: Parcel) -> dict[str, Any]:
        doc: dict[str, Any] = {"tracking_number": parcel.number}
        slug = vendor_code(parcel.carrier, self.name, self.carrier_codes)
        if slug:
            doc["slug"] = slug
        if parcel.order_id:
            doc["order_id"] = parcel.order_id
        return doc

    def request(self, parcels: Sequence[Parcel]) -> HttpRequest:
        [parcel] = parcels
        return HttpRequest("POST", self.url, {"Content-Type": "application/json", "as-api-key": self.credentials.key},
                           json.dumps(self.body(parcel), ensure_ascii=False).encode())

    def results(self, parcels: Sequence[Parcel], status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Result]:
        doc = _json(body)
        meta = doc.get("meta") if isinstance(doc, dict) else None
        code = str(meta.get("code")) if isinstance(meta, dict) and meta.get("code") is not None else f"HTTP {status}"
        message = str((meta or {}).get("message") or "")[:MAX_MESSAGE] if isinstance(meta, dict) else ""
        if status in (200, 201) and code in ("200", "201", f"HTTP {status}"):
            return _all(parcels, Result(REGISTERED, code, message))
        if code == "4003":
            return _all(parcels, Result(ALREADY, code, message))
        failure = _http_failure(status, headers)
        if failure is not None:
            if status == 429 and failure.retry_after is None:
                failure = Result(RETRY, failure.code, failure.message, _reset_in(headers))
            return _all(parcels, Result(failure.outcome, code if meta else failure.code, message or failure.message,
                                        failure.retry_after))
        if code in self.PARCEL_CODES or 400 <= status < 500:
            return _all(parcels, Result(REJECTED, code, message))
        return _all(parcels, Result(RETRY, code, message))


def _reset_in(headers: Mapping[str, str]) -> float | None:
    """Seconds until AfterShip's ``X-RateLimit-Reset`` (a Unix time), when it sent one."""
    raw = headers.get("X-RateLimit-Reset") or headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset")
    try:
        return max(0.0, float(raw) - time.time()) if raw else None
    except ValueError:
        return None


class SeventeenTrack(Client):
    """17TRACK Tracking API v2.2, register: ``POST https://api.17track.net/track/v2.2/register``, header
    ``17token``, a JSON array of up to 40 ``{"number", "carrier", "param", "tag"}``.
    https://asset.17track.net/api/document/v2.2_en/index.html

    - Answer ``{"code": 0, "data": {"accepted": [{"number", ...}], "rejected": [{"number", "error": {"code",
      "message"}}]}}``; error codes (https://help.17track.net/hc/en-us/articles/37570440168473): -18019901
      already registered (success for us); -18010010/11/12/13/15/18/19/20 and -18019903 (carrier not
      detected) concern the number; -18010001 IP not whitelisted, -18010002 invalid key, -18010004 account
      disabled, -18010005 unauthorized concern the account; -18010003 internal error, retry.
    - ``param``: the additional field a carrier needs (-18010020 asks for a phone number: SF's last four
      digits of the sender's phone).
    - 3 requests a second, 40 numbers a request; HTTP 429 beyond.
    """

    name = "17track"
    documented_rate = 3.0
    max_batch = 40
    URL = "https://api.17track.net/track/v2.2/register"
    ACCOUNT_CODES = frozenset({"-18010001", "-18010002", "-18010004", "-18010005"})
    PARCEL_CODES = frozenset({"-18010010", "-18010011", "-18010012", "-18010013", "-18010015", "-18010018",
                              "-18010019", "-18010020", "-18019903"})

    def precheck(self, parcel: Parcel) -> Result | None:
        return None  # (17TRACK answers -18010020 itself when a carrier needs a phone)

    def item(self, parcel: Parcel) -> dict[str, Any]:
        doc: dict[str, Any] = {"number": parcel.number}
        key = vendor_code(parcel.carrier, self.name, self.carrier_codes)
        if key and key.isdigit():
            doc["carrier"] = int(key)
        tail = phone_tail(parcel.carrier, self.sender_phones, parcel.shop)
        if tail:
            doc["param"] = tail
        if parcel.order_id:
            doc["tag"] = parcel.order_id[:100]
        return doc

    def request(self, parcels: Sequence[Parcel]) -> HttpRequest:
        body = json.dumps([self.item(p) for p in parcels], ensure_ascii=False).encode()
        return HttpRequest("POST", self.url, {"Content-Type": "application/json", "17token": self.credentials.key}, body)

    def outcome(self, code: str) -> str:
        if code == "-18019901":
            return ALREADY
        if code in self.ACCOUNT_CODES:
            return ACCOUNT
        return REJECTED if code in self.PARCEL_CODES else RETRY

    def results(self, parcels: Sequence[Parcel], status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Result]:
        failure = _http_failure(status, headers)
        if failure is not None:
            return _all(parcels, failure)
        doc = _json(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
            return _all(parcels, Result(RETRY, f"HTTP {status}", "not 17TRACK's JSON answer"))
        top = str(doc.get("code", 0))
        if top != "0":
            errors = doc["data"].get("errors") or [{}]
            message = str((errors[0] or {}).get("message") or "")[:MAX_MESSAGE] if isinstance(errors, list) else ""
            return _all(parcels, Result(self.outcome(top), top, message))
        by_number = {p.number: p.key for p in parcels}
        out: dict[str, Result] = {}
        for item in doc["data"].get("accepted") or []:
            if isinstance(item, dict) and item.get("number") in by_number:
                out[by_number[item["number"]]] = Result(REGISTERED, "0")
        for item in doc["data"].get("rejected") or []:
            if isinstance(item, dict) and item.get("number") in by_number:
                error: dict[str, Any] = item["error"] if isinstance(item.get("error"), dict) else {}
                code = str(error.get("code", ""))
                out[by_number[item["number"]]] = Result(self.outcome(code), code, str(error.get("message") or "")[:MAX_MESSAGE])
        for p in parcels:  # a number the answer does not mention: ask again
            out.setdefault(p.key, Result(RETRY, "0", "not in the answer"))
        return out


class Kdniao(Client):
    """kdniao (快递鸟) 物流跟踪 subscription: ``POST https://api.kdniao.com/api/dist``, form fields ``RequestData``
    (JSON: ``ShipperCode``, ``LogisticCode``, ``OrderCode``, ``CustomerName``), ``EBusinessID``,
    ``RequestType=8008``, ``DataSign`` = Base64(md5(RequestData + ApiKey), 32 lower-case hex), ``DataType=2``.
    https://s.apifox.cn/apidoc/docs-site/2538027/api-72951534 (订阅接口)

    - ``CustomerName``: "ShipperCode为SF时必填, 对应寄件人/收件人手机号后四位" (the shop's sender phone here).
    - The push address is set in kdniao's console, not per request.
    - Answer ``{"EBusinessID", "UpdateTime", "Success", "Reason"}``. kdniao documents that its subscription
      does not check what is subscribed (carrier against number, the number, a repeat): a repeat is answered
      ``Success: true``, and ``Success: false`` (a ``Reason``, no code) concerns the request or the account
      (sign, business id, service), not the parcel. What it would need of a parcel and we cannot give (no
      ShipperCode for the carrier, SF without a phone) is refused here, before asking.
    - kdniao publishes no rate for subscribing; we hold it to the 10 a second its query API documents.
    """

    name = "kdniao"
    documented_rate = 10.0
    max_batch = 1
    URL = "https://api.kdniao.com/api/dist"
    REQUEST_TYPE = "8008"

    def precheck(self, parcel: Parcel) -> Result | None:
        if not vendor_code(parcel.carrier, self.name, self.carrier_codes):
            return Result(REJECTED, "carrier", f"no kdniao ShipperCode for {parcel.carrier}: set subscriptions.carrier_codes.{parcel.carrier}")
        return no_phone(parcel, self.sender_phones)

    @staticmethod
    def sign(request_data: str, api_key: str) -> str:
        digest = hashlib.md5((request_data + api_key).encode()).hexdigest()
        return base64.b64encode(digest.encode()).decode()

    def request_data(self, parcel: Parcel) -> dict[str, Any]:
        doc: dict[str, Any] = {"ShipperCode": vendor_code(parcel.carrier, self.name, self.carrier_codes) or "",
                               "LogisticCode": parcel.number, "OrderCode": parcel.order_id or ""}
        tail = phone_tail(parcel.carrier, self.sender_phones, parcel.shop)
        if tail:
            doc["CustomerName"] = tail
        return doc

    def request(self, parcels: Sequence[Parcel]) -> HttpRequest:
        [parcel] = parcels
        data = json.dumps(self.request_data(parcel), ensure_ascii=False)
        form = {"RequestData": data, "EBusinessID": self.credentials.key, "RequestType": self.REQUEST_TYPE,
                "DataSign": self.sign(data, self.credentials.secret), "DataType": "2"}
        return HttpRequest("POST", self.url, {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
                           urlencode(form).encode())

    def results(self, parcels: Sequence[Parcel], status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Result]:
        failure = _http_failure(status, headers)
        if failure is not None:
            return _all(parcels, failure)
        doc = _json(body)
        if not isinstance(doc, dict) or "Success" not in doc:
            return _all(parcels, Result(RETRY, f"HTTP {status}", "not kdniao's JSON answer"))
        reason = str(doc.get("Reason") or "")[:MAX_MESSAGE]
        if doc["Success"] is True:
            return _all(parcels, Result(REGISTERED, "Success", reason))
        return _all(parcels, Result(ACCOUNT, "Success=false", reason))


def make_vendor(aggregator: str, credentials: Credentials, *, callback_url: str = "", endpoint: str = "",
                sender_phones: Mapping[str, str] | None = None, carrier_codes: Mapping[str, str] | None = None) -> Vendor:
    """The vendor client for ``subscriptions.aggregator``."""
    if aggregator == "kuaidi100":
        return Kuaidi100(credentials, callback_url, endpoint, sender_phones, carrier_codes)
    if aggregator == "aftership":
        return AfterShip(credentials, endpoint, carrier_codes=carrier_codes)
    if aggregator == "17track":
        return SeventeenTrack(credentials, endpoint, sender_phones, carrier_codes)
    if aggregator == "kdniao":
        return Kdniao(credentials, endpoint, sender_phones, carrier_codes)
    raise ValueError(f"unknown aggregator {aggregator!r}")
