"""parcelwatch's vocabulary, defined once: issue kinds, severities, statuses, carriers, platforms, provinces,
regions and the time zone staff read times in.

Everything that names one of these imports it from here; configuration validates against it, the wire
models check events against it, the queue and the page label it.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from datetime import date, datetime, timedelta, timezone

# -- time ---------------------------------------------------------------------------------------------------

# Inside, every time is UTC epoch seconds. Staff, platforms and Chinese carriers read China time (UTC+8,
# no daylight saving): evidence texts, the day's queue, quiet hours, kuaidi100's zone-less timestamps.
CHINA_TZ = timezone(timedelta(hours=8))
HOUR = 3600.0
DAY = 86_400.0


def china_time(when: float | str | None) -> str:
    """``when`` (epoch seconds, or ISO 8601 with an offset) as staff read it: China time to the minute.
    None or an empty string gives ""."""
    if when is None or when == "":
        return ""
    epoch = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() if isinstance(when, str) else when
    # Every issue text shows a few times, mostly of recent minutes, and formatting one costs more than the
    # rest of a rule: each minute is formatted once.
    minute = int(epoch // 60)
    text = _CHINA_MINUTES.get(minute)
    if text is None:
        if len(_CHINA_MINUTES) >= _CHINA_MINUTES_KEPT:
            _CHINA_MINUTES.clear()
        text = _CHINA_MINUTES[minute] = datetime.fromtimestamp(minute * 60, tz=CHINA_TZ).strftime("%Y-%m-%d %H:%M")
    return text


# A cache of pure formatting results (bounded: about five weeks of minutes, a few MiB at most).
_CHINA_MINUTES: dict[int, str] = {}
_CHINA_MINUTES_KEPT = 50_000


def china_date(epoch: float) -> date:
    """The calendar day in China at ``epoch``."""
    return datetime.fromtimestamp(epoch, tz=CHINA_TZ).date()


def china_day_bounds(day: date) -> tuple[float, float]:
    """A calendar day in China time as [start, end) epoch seconds."""
    start = datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


# -- issues -------------------------------------------------------------------------------------------------


class IssueKind(str, enum.Enum):
    SHIP_OVERDUE = "ship_overdue"
    PICKUP_OVERDUE = "pickup_overdue"
    TRANSIT_OVERDUE = "transit_overdue"
    TRACKING_STALE = "tracking_stale"
    CONFIRMED_UNSIGNED = "confirmed_unsigned"
    AUTOCONFIRM_IMMINENT = "autoconfirm_imminent"
    LOCKER_UNCOLLECTED = "locker_uncollected"
    CARRIER_EXCEPTION = "carrier_exception"
    # Not a detector's finding: the parcel could not be registered with the tracking aggregator, so no scan
    # of it will arrive and none of the rules above can watch it (``subscriptions/``).
    TRACKING_UNREGISTERED = "tracking_unregistered"


ISSUE_KINDS: tuple[str, ...] = tuple(k.value for k in IssueKind)


class Severity(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


# Lowest first: a severity's index is its level.
SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)
SEVERITIES_DESC: tuple[str, ...] = tuple(reversed(SEVERITIES))

# An issue's lifecycle: open -> acknowledged -> resolved by staff, or auto_resolved by the stream.
STATUSES = ("open", "acknowledged", "resolved", "auto_resolved")
ACTIVE_STATUSES = ("open", "acknowledged")
# What staff record when they resolve an issue.
RESOLUTION_CODES = ("contacted_buyer", "extended_receipt", "reshipped", "refunded", "carrier_claim", "other")

# (Chinese, English) labels. Issue kinds and exception reasons are labelled in config (``labels``).
STATUS_LABELS = {
    "open": ("待处理", "Open"),
    "acknowledged": ("处理中", "Acknowledged"),
    "resolved": ("已解决", "Resolved"),
    "auto_resolved": ("已自动解决", "Auto-resolved"),
}
SEVERITY_LABELS = {
    "critical": ("紧急", "Critical"),
    "high": ("高", "High"),
    "medium": ("中", "Medium"),
    "low": ("低", "Low"),
}
RESOLUTION_LABELS = {
    "contacted_buyer": ("已联系买家", "Contacted buyer"),
    "extended_receipt": ("已延长收货", "Extended receipt"),
    "reshipped": ("已补发", "Re-shipped"),
    "refunded": ("已退款", "Refunded"),
    "carrier_claim": ("已向快递索赔", "Carrier claim"),
    "other": ("其他", "Other"),
}

# Why the stream ended an issue by itself (``core/processor.py`` ``_resolution``), as staff read it.
# Unknown codes are shown as they are.
AUTO_RESOLUTION_LABELS = {
    "signed": ("已签收", "Signed"),
    "shipped": ("已发货", "Shipped"),
    "picked_up": ("已揽收", "Picked up"),
    "scanned_again": ("物流已更新", "Scanned again"),
    "collected": ("已取件", "Collected"),
    "order_confirmed": ("订单已确认收货", "Order confirmed"),
    "order_refunded": ("订单已退款", "Order refunded"),
    "order_closed": ("订单已关闭", "Order closed"),
    "deadline_moved_or_passed": ("确认收货时间已延长或已过", "Auto-confirm deadline moved or passed"),
    "condition_ended": ("问题条件已解除", "Condition ended"),
    # The embedded broker restarted empty: the parcel's record is gone; a problem that persists is raised again.
    "state_lost": ("系统重启，包裹记录已清空（问题仍在会再次提醒）", "Parcel record lost in a restart (raised again if it persists)"),
}

# -- parcels and orders -------------------------------------------------------------------------------------


class TrackingStatus(str, enum.Enum):
    """Normalised parcel status; the order of ``STATUS_RANK`` is the forward-only lifecycle."""

    INFO_RECEIVED = "info_received"  # waybill printed, no carrier scan yet
    PICKED_UP = "picked_up"  # 揽收
    IN_TRANSIT = "in_transit"  # 在途
    ARRIVED_CITY = "arrived_city"  # 到达派件城市
    OUT_FOR_DELIVERY = "out_for_delivery"  # 派件
    AT_LOCKER = "at_locker"  # 投柜 / 驿站
    SIGNED = "signed"  # 签收
    EXCEPTION = "exception"  # carrier exception; see ExceptionReason


# (Chinese, English) labels of the parcel statuses, as a scan timeline shows them.
TRACKING_STATUS_LABELS = {
    "info_received": ("已打单", "Label printed"),
    "picked_up": ("已揽收", "Picked up"),
    "in_transit": ("运输中", "In transit"),
    "arrived_city": ("到达派件城市", "Arrived in the city"),
    "out_for_delivery": ("派件中", "Out for delivery"),
    "at_locker": ("已入柜/驿站", "At a locker or station"),
    "signed": ("已签收", "Signed"),
    "exception": ("异常", "Exception"),
}

STATUS_RANK: dict[str, int] = {
    "info_received": 0,
    "picked_up": 1,
    "in_transit": 2,
    "arrived_city": 3,
    "out_for_delivery": 4,
    "at_locker": 5,
    "signed": 6,
    "exception": -1,  # an exception does not move the parcel along; it is tracked on its own
}


class ExceptionReason(str, enum.Enum):
    PROBLEM_PARCEL = "problem_parcel"  # 疑难件
    OUT_OF_AREA = "out_of_area"  # 超区 / 超派
    REFUSED = "refused"  # 拒收
    RETURNED = "returned"  # 退回
    LOST = "lost"  # 丢失
    DAMAGED = "damaged"  # 破损
    HELD = "held"  # 滞留
    UNREACHABLE = "unreachable"  # 无法联系
    DELIVERY_FAILED = "delivery_failed"  # 派送失败
    CUSTOMS = "customs"  # 清关
    OTHER = "other"


class OrderEventKind(str, enum.Enum):
    PAID = "paid"
    SHIPPED = "shipped"
    CONFIRMED = "confirmed"
    RECEIPT_EXTENDED = "receipt_extended"
    REFUNDED = "refunded"
    CLOSED = "closed"


# Buyer notification stages, in the order a parcel reaches them.
NOTIFICATION_STAGES = ("picked_up", "arrived_city", "out_for_delivery", "delayed", "exception", "locker_uncollected")

# -- carriers ----------------------------------------------------------------------------------------------

# Canonical carrier codes and the names staff read. Each source's own codes (kuaidi100 ``com``, kdniao
# ``ShipperCode``, AfterShip slugs, 17TRACK keys) map onto these in ``ingest/carriers.py``. A carrier nobody
# maps is kept under its source's own code, ``source:code`` (``kuaidi100:zhongtongkuaiyun``): never rejected,
# it has lanes and issues like any other, and metrics label it by source (``carrier_label``).
CARRIERS: dict[str, str] = {
    "ZTO": "中通快递",
    "YTO": "圆通速递",
    "YUNDA": "韵达快递",
    "STO": "申通快递",
    "SF": "顺丰速运",
    "JD": "京东物流",
    "EMS": "中国邮政EMS",
    "JTEXPRESS": "极兔速递",
    "DEPPON": "德邦快递",
    "YZPY": "邮政快递包裹",
    "BESTEXP": "百世快递",
    "CAINIAO": "菜鸟速递",
    "FEDEX": "联邦快递",
    "UPS": "UPS",
    "USPS": "美国邮政",
    "DHL": "DHL",
}

# Carrier names as sellers, platforms and aggregators write them (matched whole, case-insensitively, never as
# a part of a longer text), besides the display names above.
CARRIER_NAMES: dict[str, str] = {
    **{name: code for code, name in CARRIERS.items()},
    "中通": "ZTO", "中通速递": "ZTO", "ZTO Express": "ZTO",
    "圆通": "YTO", "圆通快递": "YTO", "YTO Express": "YTO",
    "韵达": "YUNDA", "韵达速递": "YUNDA", "Yunda Express": "YUNDA",
    "申通": "STO", "STO Express": "STO",
    "顺丰": "SF", "顺丰快递": "SF", "顺丰速递": "SF", "SF Express": "SF",
    "京东": "JD", "京东快递": "JD", "京东配送": "JD", "JD Logistics": "JD",
    "邮政EMS": "EMS", "EMS快递": "EMS", "中国邮政速递物流": "EMS", "China EMS": "EMS",
    "中国邮政": "YZPY", "邮政包裹": "YZPY", "邮政快递": "YZPY", "邮政国内小包": "YZPY", "China Post": "YZPY",
    "极兔": "JTEXPRESS", "极兔快递": "JTEXPRESS", "J&T极兔": "JTEXPRESS", "J&T": "JTEXPRESS", "J&T Express": "JTEXPRESS",
    "德邦": "DEPPON", "德邦物流": "DEPPON", "Deppon": "DEPPON",
    "百世": "BESTEXP", "百世汇通": "BESTEXP", "汇通快递": "BESTEXP", "Best Express": "BESTEXP",
    "菜鸟": "CAINIAO", "丹鸟": "CAINIAO",
    "FedEx": "FEDEX", "联邦": "FEDEX",
    "UPS快递": "UPS",
    "DHL快递": "DHL", "敦豪": "DHL",
}


def _fold(name: str) -> str:
    """How names are compared: full-width letters and digits as ASCII, no spaces, any case ('ＥＭＳ ' is 'ems')."""
    return "".join(unicodedata.normalize("NFKC", name).split()).casefold()


_CARRIER_NAME_LOOKUP: dict[str, str] = {
    **{_fold(code): code for code in CARRIERS},
    **{_fold(name): code for name, code in CARRIER_NAMES.items()},
}
# A source as the prefix of an unmapped carrier code, and the characters kept in the code itself (letters of
# any script, digits, and . _ & + -; anything else becomes "-").
_SOURCE_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
_CODE_JUNK = re.compile(r"[^\w.&+-]+")
MAX_CARRIER_CODE = 40


def canonical_carrier(value: str, source: str = "generic") -> str:
    """The canonical code for ``value``: a canonical code (any case) or a carrier name as is; a code already
    kept under its source (``kuaidi100:zhongtongkuaiyun``) as is; anything else kept under ``source``'s own
    code (``generic:anneng``), lower-cased. ValueError when nothing of a code is left.

    A source's own codes (``zhongtong``, ``190455``) are mapped by ``ingest.carriers.resolve``, which knows the
    sources' tables; this is the part every event shares."""
    text = value.strip()
    upper = text.upper()
    if upper in CARRIERS:
        return upper
    named = _CARRIER_NAME_LOOKUP.get(_fold(text))
    if named is not None:
        return named
    prefix, sep, rest = text.partition(":")
    if sep and _SOURCE_RE.fullmatch(prefix) and rest and ":" not in rest:
        return f"{prefix}:{_carrier_code_part(rest)}"
    return f"{carrier_source(source)}:{_carrier_code_part(text)}"


def _carrier_code_part(code: str) -> str:
    cleaned = _CODE_JUNK.sub("-", code.strip().lower()).strip("-")[:MAX_CARRIER_CODE]
    if not cleaned:
        raise ValueError("has no letters or digits")
    return cleaned


def carrier_source(source: str | None) -> str:
    """``source`` as the prefix of an unmapped carrier code ("generic" when it cannot be one)."""
    text = (source or "").strip().lower()
    return text if _SOURCE_RE.fullmatch(text) else "generic"


def is_mapped_carrier(code: str) -> bool:
    return code in CARRIERS


def carrier_label(code: str) -> str:
    """A bounded metric label: the canonical code, or ``<source>:other`` for a carrier kept under a source's
    own code (one label per source, never per code); "other" when the source is not a known one."""
    if code in CARRIERS:
        return code
    source = code.partition(":")[0]
    return f"{source}:other" if source in CARRIER_SOURCES else "other"


def carrier_name(code: str) -> str:
    """What staff read for a carrier: its Chinese name, or the source's own code of an unmapped one."""
    name = CARRIERS.get(code)
    return name if name is not None else code.partition(":")[2] or code


PLATFORMS = ("taobao", "tmall", "douyin", "pinduoduo", "jd", "kuaishou", "xiaohongshu", "other")
# (Chinese, English) display names of the platforms, as sellers call them (Douyin's seller side is 抖店).
PLATFORM_LABELS = {
    "taobao": ("淘宝", "Taobao"),
    "tmall": ("天猫", "Tmall"),
    "douyin": ("抖店", "Douyin Shop"),
    "pinduoduo": ("拼多多", "Pinduoduo"),
    "jd": ("京东", "JD.com"),
    "kuaishou": ("快手", "Kuaishou"),
    "xiaohongshu": ("小红书", "Xiaohongshu"),
    "other": ("其他平台", "Other platform"),
}

# Where carrier codes come from: the aggregators' pushes, our own JSON and the shop platforms (their order
# events name carriers in their own words). A carrier kept under its source's code is prefixed by one of these.
CARRIER_SOURCES: tuple[str, ...] = ("kuaidi100", "kdniao", "aftership", "17track", "generic",
                                    *(p for p in PLATFORMS if p != "other"))

# Province-level divisions by canonical short name, with the full official names accepted on input.
PROVINCES: dict[str, tuple[str, ...]] = {
    "北京": ("北京市",),
    "天津": ("天津市",),
    "上海": ("上海市",),
    "重庆": ("重庆市",),
    "河北": ("河北省",),
    "山西": ("山西省",),
    "辽宁": ("辽宁省",),
    "吉林": ("吉林省",),
    "黑龙江": ("黑龙江省",),
    "江苏": ("江苏省",),
    "浙江": ("浙江省",),
    "安徽": ("安徽省",),
    "福建": ("福建省",),
    "江西": ("江西省",),
    "山东": ("山东省",),
    "河南": ("河南省",),
    "湖北": ("湖北省",),
    "湖南": ("湖南省",),
    "广东": ("广东省",),
    "海南": ("海南省",),
    "四川": ("四川省",),
    "贵州": ("贵州省",),
    "云南": ("云南省",),
    "陕西": ("陕西省",),
    "甘肃": ("甘肃省",),
    "青海": ("青海省",),
    "台湾": ("台湾省",),
    "内蒙古": ("内蒙古自治区",),
    "广西": ("广西壮族自治区",),
    "西藏": ("西藏自治区",),
    "宁夏": ("宁夏回族自治区",),
    "新疆": ("新疆维吾尔自治区",),
    "香港": ("香港特别行政区",),
    "澳门": ("澳门特别行政区",),
}
_PROVINCE_LOOKUP: dict[str, str] = {
    **{short: short for short in PROVINCES},
    **{full: short for short, fulls in PROVINCES.items() for full in fulls},
}


def normalise_province(value: str | None) -> str | None:
    """A province's canonical short name from its short or full name (None: empty or unknown)."""
    if value is None or value == "":
        return None
    return _PROVINCE_LOOKUP.get(value.strip())


# Regions of China, for bounded metric labels (a province is never a label of its own).
REGIONS = ("east", "north", "south", "central", "northeast", "southwest", "northwest", "remote", "unknown")
_REGION_OF = {
    **dict.fromkeys(("上海", "江苏", "浙江", "安徽", "福建", "江西", "山东"), "east"),
    **dict.fromkeys(("北京", "天津", "河北", "山西"), "north"),
    **dict.fromkeys(("广东", "广西", "海南", "香港", "澳门"), "south"),
    **dict.fromkeys(("河南", "湖北", "湖南"), "central"),
    **dict.fromkeys(("辽宁", "吉林", "黑龙江"), "northeast"),
    **dict.fromkeys(("重庆", "四川", "贵州", "云南"), "southwest"),
    **dict.fromkeys(("陕西", "甘肃", "宁夏", "台湾"), "northwest"),
    **dict.fromkeys(("新疆", "西藏", "青海", "内蒙古"), "remote"),
}


def province_region(province: str | None) -> str:
    return _REGION_OF.get(province or "", "unknown")
