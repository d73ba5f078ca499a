"""Export rows -> order events (``paid``, ``shipped`` per parcel, ``confirmed``, ``refunded`` / ``closed``).

Row by row, only the layout's fields are read (``layouts.Binding``), and the address cell only for its
province and city; what a row says is kept as ``RowFacts`` (no buyer data in it). Rows are grouped by order
(an order may span several rows: one per item on 抖店), and each order gives its events:

- ``paid`` at the payment time (an unpaid order gives nothing: parcelwatch has nothing to watch yet);
- ``shipped`` for each parcel: several tracking numbers in a cell, or on several rows, are several parcels
  (a split shipment); a parcel shared by several orders (merged shipping) is shipped for each;
- ``confirmed`` at the confirmation time of a row not closed (where the layout names the statuses under
  which that time means a confirmation, only under those);
- ``refunded`` when every row of the order was refunded or closed and one was refunded, ``closed`` when every
  row was closed without a refund; a refund of part of an order (one item of several, part of the amount)
  is no order event (the order goes on) and is counted in the report.

Every event carries the order's destination, promised ship time, auto-confirm deadline and value where the
export has them, and a stable id (``import:<platform>:<order>:<kind>[:<parcel>]``): importing the same file
again, or a later export overlapping it, sends the same events, which the stream absorbs.

A row with a problem is reported with its row number and column, never its content, and its whole order is
left out (half an order could close it or miss a refund).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.events import INVISIBLE, InvalidEvent, OrderEvent, parse_order_event
from domain.vocabulary import CHINA_TZ, is_mapped_carrier, normalise_province
from ingest.carriers import ALIASES, resolve

from .address import region_of
from .layouts import Binding, Layout, clean
from .read import LossyNumber

TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d",
                "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日", "%Y%m%d%H%M%S")
_NUMBER_LISTS = re.compile(r"[,，;；/、\r\n]+")
_EXCEL_NUMBER = re.compile(r"^[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+$")  # 1.93012E+18: a long number Excel rounded
_INVISIBLE = dict.fromkeys(map(ord, INVISIBLE))
MIN_TRACKING_NUMBER = 8
_NAME_SPLIT = re.compile(r"[,，;；/、\n]+")
_PIECES = re.compile(r"[;；\n|]+")
_NUMBER_IN_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{4,}[A-Za-z0-9]")
_NO_PREFIX = re.compile(r"^(?:no|NO|No)[.:：]?\s*")
_NAME_PUNCT = " \t:：,，-()（）[]【】<>《》\"'"
MAX_ORDER_ID = 64


class Bad(ValueError):
    """One cell cannot be read: the message says what is wrong with it, never what it holds."""


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.problem}"


@dataclass
class RowFacts:
    row: int
    order_id: str
    status: str = ""
    paid_at: float | None = None
    shipped_at: float | None = None
    confirmed_at: float | None = None
    closed_at: float | None = None
    parcels: list[tuple[str, str]] = field(default_factory=list)
    province: str | None = None
    city: str | None = None
    promised_ship_at: float | None = None
    auto_confirm_at: float | None = None
    value: float | None = None
    refund_status: str = ""
    refund_amount: float | None = None
    category: str | None = None


@dataclass
class Report:
    rows: int = 0
    orders: int = 0
    events: Counter[str] = field(default_factory=Counter)
    skipped_orders: int = 0
    errors: list[RowError] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)


class Converter:
    """Feed it the rows of one or more export files of one shop (``add_row``), then take the events."""

    def __init__(self, layout: Layout, shop: str, *, exported_at: float, origin_province: str | None = None) -> None:
        self.layout = layout
        self.shop = shop
        self.exported_at = exported_at
        self.origin = origin_province or layout.origin_province
        self.formats = (*TIME_FORMATS, *layout.time_formats)
        self.orders: dict[str, list[RowFacts]] = {}
        self.failed: dict[str, list[RowError]] = {}
        self._last_order_id: str | None = None
        self.report = Report()

    # -- rows ---------------------------------------------------------------------------------------------------

    def add_row(self, binding: Binding, number: int, cells: list[Any]) -> None:
        """Read one data row; an empty row is skipped."""
        if all(not str(c).strip() for c in cells):
            return
        self.report.rows += 1
        errors: list[RowError] = []

        def read(name: str, parse: Any) -> Any:
            cell, header = binding.value(name, cells)
            if cell == "":
                return None
            try:
                return parse(cell)
            except Bad as exc:
                errors.append(RowError(number, header, str(exc)))
                return None

        order_id = read("order_id", self.order_id)
        if order_id is None:
            if not errors:
                errors.append(RowError(number, binding.value("order_id", cells)[1], "is empty: every row needs its order number"))
            if self.layout.rows_are == "items" and self._last_order_id is not None and not binding.value("order_id", cells)[0]:
                # An item row without its order number (a merged cell, most often) belongs to the order above:
                # judged without it, the rest of that order could close it or leave its parcel out.
                self.failed.setdefault(self._last_order_id, []).extend(errors)
            self.report.errors.extend(errors)
            return
        self._last_order_id = order_id
        facts = RowFacts(number, order_id)
        facts.status = clean(str(binding.value("status", cells)[0]))
        facts.refund_status = clean(str(binding.value("refund_status", cells)[0]))
        for name in ("paid_at", "shipped_at", "confirmed_at", "closed_at", "promised_ship_at", "auto_confirm_at"):
            setattr(facts, name, read(name, self.time))
        facts.value = read("order_value", amount)
        facts.refund_amount = read("refund_amount", amount)
        facts.category = read("category", lambda c: text(c, 40))
        facts.parcels = self.parcels(binding, number, cells, errors)
        if facts.parcels and facts.shipped_at is None:
            errors.append(RowError(number, binding.value("shipped_at", cells)[1], "is empty, but the row names a parcel: "
                                   "add the ship time to the export (or map the column that has it)"))
        province = read("province", province_of)
        city = read("city", lambda c: text(c, 40))
        if province is None:
            address, _ = binding.value("address", cells)
            if address:
                province, from_address = region_of(str(address))  # the rest of the address is dropped here
                city = city or from_address
        facts.province, facts.city = province, city
        self.orders.setdefault(order_id, []).append(facts)
        if errors:
            self.failed.setdefault(order_id, []).extend(errors)
            self.report.errors.extend(errors)

    def order_id(self, cell: Any) -> str:
        # (Full-width digits and invisible characters would make the same order a second one.)
        value = unicodedata.normalize("NFKC", str(cell)).translate(_INVISIBLE).strip()
        if isinstance(cell, LossyNumber) or _EXCEL_NUMBER.match(value):
            raise Bad("stored by Excel as a number, whose last digits may be lost: export it as text")
        if len(value) > MAX_ORDER_ID:
            raise Bad(f"longer than {MAX_ORDER_ID} characters")
        if any(c.isspace() for c in value):
            raise Bad("has spaces inside: not an order number")
        if "\ufffd" in value:
            raise Bad("is not text (the file cut off inside it?)")
        return value

    def time(self, cell: Any) -> float:
        value = str(cell).strip()
        if value.isascii() and value.isdigit() and len(value) in (10, 13):  # epoch seconds or milliseconds
            return int(value) / (1000 if len(value) == 13 else 1)
        for fmt in self.formats:
            try:
                return datetime.strptime(value, fmt).replace(tzinfo=CHINA_TZ).timestamp()
            except ValueError:
                continue
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise Bad("not a time (expected e.g. 2026-11-01 18:30:00, China time)") from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=CHINA_TZ)).timestamp()

    def parcels(self, binding: Binding, number: int, cells: list[Any], errors: list[RowError]) -> list[tuple[str, str]]:
        """The (carrier, tracking number) pairs of a row: from carrier + number columns, or a combined cell."""
        # A carrier the vocabulary does not know is kept under the platform's (or the ERP's) own name for it.
        source = self.layout.platform if self.layout.carrier_names == "name" else self.layout.carrier_names
        numbers_cell, numbers_header = binding.value("tracking_number", cells)
        if numbers_cell:
            names_cell, names_header = binding.value("carrier", cells)
            try:
                if isinstance(numbers_cell, LossyNumber):
                    raise Bad("stored by Excel as a number, whose last digits may be lost: export it as text")
                numbers = [tracking_number(n) for n in _tracking_numbers(str(numbers_cell))]
            except Bad as exc:
                errors.append(RowError(number, numbers_header, str(exc)))
                return []
            try:
                names = [carrier(n, source, self.layout.carriers) for n in _NAME_SPLIT.split(str(names_cell)) if n.strip()]
            except Bad as exc:
                errors.append(RowError(number, names_header, str(exc)))
                return []
            if not names:
                errors.append(RowError(number, names_header, f"is empty, but {numbers_header} names a parcel"))
                return []
            if len(names) == 1:
                names *= len(numbers)
            if len(names) != len(numbers):
                errors.append(RowError(number, names_header, f"names {len(names)} carriers for {len(numbers)} tracking numbers"))
                return []
            return _unique(list(zip(names, numbers, strict=True)))
        express, header = binding.value("express", cells)
        if not express:
            return []
        try:
            return _unique(express_parcels(str(express), source, self.layout.carriers))
        except Bad as exc:
            errors.append(RowError(number, header, str(exc)))
            return []

    # -- orders -------------------------------------------------------------------------------------------------

    def events(self) -> list[OrderEvent]:
        """Every order's events, in the order the orders first appeared."""
        shared = Counter(p for rows in self.orders.values() for p in {p for r in rows for p in r.parcels})
        self.report.notes["merged shipments (one parcel, several orders)"] = sum(1 for n in shared.values() if n > 1)
        out: list[OrderEvent] = []
        for order_id, rows in self.orders.items():
            self.report.orders += 1
            if order_id in self.failed:
                self.report.skipped_orders += 1
                continue
            try:
                events = self.order_events(order_id, rows)
            except InvalidEvent as exc:
                self.report.skipped_orders += 1
                self.report.errors.append(RowError(rows[0].row, exc.field, exc.problem))
                continue
            for ev in events:
                self.report.events[ev.kind] += 1
            out.extend(events)
        return out

    def order_events(self, order_id: str, rows: list[RowFacts]) -> list[OrderEvent]:
        layout = self.layout
        ended = [r for r in rows if r.status in layout.closed or self.refunded(r)]
        refunds = [r for r in rows if self.refunded(r)]
        paid_at = _first(r.paid_at for r in rows)
        parcels: dict[tuple[str, str], float] = {}
        for r in rows:
            for p in r.parcels:
                assert r.shipped_at is not None  # (a row naming a parcel without a ship time is an error)
                parcels[p] = min(parcels.get(p, r.shipped_at), r.shipped_at)
        if paid_at is None and not parcels:
            self.report.notes["unpaid orders (nothing to watch)"] += 1
            return []
        if (refunds and len(ended) < len(rows)) or any(r.refund_amount and r not in ended for r in rows):
            self.report.notes["partial refunds (the order goes on)"] += 1
        if layout.rows_are == "items" and parcels and any(not r.parcels and r not in ended for r in rows):
            self.report.notes["partly shipped orders"] += 1
        common: dict[str, Any] = {"order_id": order_id, "shop": self.shop, "platform": layout.platform}
        facts = {
            "origin_province": self.origin,
            "destination_province": _first(r.province for r in rows),
            "destination_city": _first(r.city for r in rows),
            "promised_ship_time": _first(r.promised_ship_at for r in rows),
            "auto_confirm_deadline": _first(r.auto_confirm_at for r in rows),
            "order_value": self.value(rows),
            "category": _first(r.category for r in rows),
        }
        if facts["destination_province"] is None:
            self.report.notes["orders without a destination province"] += 1
        docs: list[dict[str, Any]] = []
        if paid_at is not None:
            docs.append({"kind": "paid", "event_time": paid_at})
        for (carrier_code_, number), shipped_at in parcels.items():
            docs.append({"kind": "shipped", "event_time": shipped_at, "carrier": carrier_code_, "tracking_number": number})
        confirmed = [r.confirmed_at for r in rows if r.confirmed_at is not None and r not in ended
                     and (not layout.confirmed or r.status in layout.confirmed)]
        if confirmed:
            docs.append({"kind": "confirmed", "event_time": min(confirmed)})
        if len(ended) == len(rows):
            closed_at = max((r.closed_at for r in rows if r.closed_at is not None), default=self.exported_at)
            docs.append({"kind": "refunded" if refunds else "closed", "event_time": closed_at})
        return [self.event(common, facts, doc) for doc in docs]

    def refunded(self, row: RowFacts) -> bool:
        """The money of this row went back: its after-sale status says so, or it is closed with an amount refunded."""
        return row.refund_status in self.layout.refunded or (row.status in self.layout.closed and bool(row.refund_amount))

    def value(self, rows: list[RowFacts]) -> float | None:
        values = [r.value for r in rows if r.value is not None]
        if not values:
            return None
        return round(sum(values), 2) if self.layout.rows_are == "items" else max(values)

    def event(self, common: dict[str, Any], facts: dict[str, Any], doc: dict[str, Any]) -> OrderEvent:
        kind = doc["kind"]
        parcel = f":{doc['carrier']}:{doc['tracking_number']}" if kind == "shipped" else ""
        event_id = f"import:{self.layout.platform}:{common['order_id']}:{kind}{parcel}"
        if len(event_id) > 128:
            event_id = "import:" + hashlib.sha1(event_id.encode()).hexdigest()[:32]
        full = {"event_id": event_id, **common, **{k: v for k, v in facts.items() if v is not None}, **doc}
        return parse_order_event(full)  # exactly what the order router will accept


# -- cells ----------------------------------------------------------------------------------------------------


def text(cell: Any, max_len: int) -> str:
    value = str(cell).strip()
    if len(value) > max_len:
        raise Bad(f"longer than {max_len} characters")
    return value


def amount(cell: Any) -> float:
    value = str(cell).strip().replace(",", "").replace("¥", "").replace("￥", "").replace("元", "")
    try:
        number = float(value)
    except ValueError:
        raise Bad("not an amount (expected e.g. 129.00)") from None
    if number < 0 or number != number:
        raise Bad("not an amount >= 0")
    return number


def province_of(cell: Any) -> str:
    province = normalise_province(str(cell).strip())
    if province is None:
        raise Bad("not a province of China (e.g. 广东 or 广东省)")
    return province


def _tracking_numbers(cell: str) -> list[str]:
    """The numbers a cell lists (with , ; / 、 or line breaks, or spaces; 千牛 writes each as "No:7310…").
    Pieces that are all too short to be a number are one number written in groups ("7310 0012 3456 78")."""
    numbers: list[str] = []
    for listed in _NUMBER_LISTS.split(cell):
        pieces = [p for p in (_NO_PREFIX.sub("", p) for p in _NO_PREFIX.sub("", listed.strip()).split()) if p]
        if len(pieces) > 1 and all(len(p) < MIN_TRACKING_NUMBER for p in pieces):
            pieces = ["".join(pieces)]
        numbers.extend(pieces)
    return numbers


def tracking_number(cell: str) -> str:
    value = cell.strip()
    if (not value.isascii() or not value.replace("-", "").isalnum() or not MIN_TRACKING_NUMBER <= len(value) <= 40
            or not any(c.isdigit() for c in value)):
        raise Bad(f"not a tracking number (letters, digits and dashes, {MIN_TRACKING_NUMBER} to 40, with digits)")
    return value


def carrier(name: str, source: str, listed: dict[str, str] | None = None) -> str:
    """The canonical code of a carrier as a cell names it (``ingest.carriers.resolve``). A name the vocabulary
    does not know is a row error unless the mapping file lists it (``carriers``: kept under the code given): a
    cell is free text, and a mis-mapped column must not turn a buyer's name into a carrier. An ERP's codes
    (``carrier_names``: an aggregator) are kept under that source's code, as its pushes are."""
    text = name.strip(_NAME_PUNCT)
    try:
        if listed and text in listed:
            return resolve(source, listed[text])
        code = resolve(source, text)
    except ValueError as exc:
        raise Bad(f"the carrier {exc}") from None
    if not is_mapped_carrier(code) and source not in ALIASES:
        raise Bad("not a carrier parcelwatch knows: list it under carriers in a mapping file (name: code)")
    return code


def express_parcels(cell: str, source: str, listed: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """抖店's 快递信息: "中通快递 73100012345678", "【中通快递】7310…;圆通速递:YT…", one parcel per piece; a piece
    without a carrier name takes the previous one's."""
    out: list[tuple[str, str]] = []
    last: str | None = None
    for piece in _PIECES.split(cell):
        numbers = [n for n in _NUMBER_IN_TEXT.findall(piece) if any(ch.isdigit() for ch in n)]
        if not numbers:
            continue
        name = piece
        for n in numbers:
            name = name.replace(n, " ")
        name = name.strip(_NAME_PUNCT + "0123456789")
        code = carrier(name, source, listed) if name else last
        if code is None:
            raise Bad("names a tracking number without its carrier")
        last = code
        out.extend((code, tracking_number(n)) for n in numbers)
    return out


def _unique(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(pairs))


def _first(values: Any) -> Any:
    return next((v for v in values if v is not None), None)
