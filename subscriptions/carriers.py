"""Carrier names and vendor codes, both ways, in one place.

- ``carrier_code(name_or_code, source)``: any carrier name or vendor code -> parcelwatch's canonical code
  (``domain.vocabulary.CARRIERS``). Every carrier a shop's export or an aggregator names goes through it:
  the order importers (Chinese names such as 中通快递, or an ERP's kdniao ShipperCodes) and the registration.
- ``vendor_code(carrier, aggregator, overrides)``: canonical code -> the code an aggregator's registration API
  takes (kuaidi100 ``com``, AfterShip ``slug``, 17TRACK carrier key, kdniao ``ShipperCode``).

Today's vocabulary is closed: a name nobody maps raises ``UnknownCarrier``. The ingest work's open vocabulary
(a carrier nobody maps kept under its source's code, e.g. ``kuaidi100:zhongtongkuaiyun``) replaces the body of
``carrier_code`` when it lands; callers already treat its answer as an opaque code.

Sources of the vendor codes (each vendor's own list):
- kuaidi100: the company code table of its API documents ("下载编码表格",
  https://api.kuaidi100.com/document/5f0ffa8f2977d50a94e1023c).
- AfterShip: courier slugs (https://www.aftership.com/docs/tracking/others/supported-couriers); a slug
  AfterShip refuses answers 4010 and is reported per parcel, fixable in ``subscriptions.carrier_codes``.
- 17TRACK: numeric carrier keys from its carrier list (https://www.17track.net/en/carriers, "Download carrier
  list"). Only the keys we could check against that list are here; for the others registration omits the
  carrier and 17TRACK detects it ("auto carrier identification", v2.2 register), which it documents for the
  bulk of Chinese numbers. Pin a key with ``subscriptions.carrier_codes`` where detection fails (-18019903).
- kdniao: ShipperCode from its carrier code table (快递鸟接口支持快递公司编码, https://www.kdniao.com/documents).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from domain.vocabulary import CARRIERS


class UnknownCarrier(ValueError):
    """No canonical carrier for this name or code (the message never echoes it: it may be any cell of a file)."""


# Canonical code -> the aggregator's registration code.
REGISTRATION_CODES: dict[str, dict[str, str]] = {
    "kuaidi100": {
        "ZTO": "zhongtong", "YTO": "yuantong", "YUNDA": "yunda", "STO": "shentong", "SF": "shunfeng", "JD": "jd",
        "EMS": "ems", "YZPY": "youzhengguonei", "JTEXPRESS": "jtexpress", "DEPPON": "debangkuaidi",
        "BESTEXP": "huitongkuaidi", "CAINIAO": "danniao",
    },
    "aftership": {
        "ZTO": "zto-express", "YTO": "yto", "YUNDA": "yunda", "STO": "sto", "SF": "sf-express", "JD": "jd",
        "EMS": "china-ems", "YZPY": "china-post", "JTEXPRESS": "jtexpress-cn", "DEPPON": "deppon",
        "BESTEXP": "bestex", "CAINIAO": "cainiao",
    },
    "17track": {"EMS": "3013", "YZPY": "3011"},
    "kdniao": {
        "ZTO": "ZTO", "YTO": "YTO", "YUNDA": "YD", "STO": "STO", "SF": "SF", "JD": "JD", "EMS": "EMS",
        "YZPY": "YZPY", "JTEXPRESS": "JTSD", "DEPPON": "DBL", "BESTEXP": "HTKY",
    },
}

# Vendor codes the registration tables do not produce but senders use for the same carrier.
_VENDOR_ALIASES: dict[str, dict[str, str]] = {
    "kuaidi100": {"shunfengkuaiyun": "SF", "jingdongkuaiyun": "JD", "youzhengbk": "YZPY", "debangwuliu": "DEPPON",
                  "baishiwuliu": "BESTEXP", "cainiao": "CAINIAO"},
    "aftership": {"jdl": "JD", "jtexpress": "JTEXPRESS"},
    "17track": {"03011": "YZPY", "03013": "EMS"},
    "kdniao": {"DBLKY": "DEPPON"},
}

# The names shops and platforms write (exports' 物流公司 / 快递公司 / 快递信息 cells): display names first.
_NAMES: dict[str, tuple[str, ...]] = {
    "ZTO": ("中通快递", "中通", "中通速递"),
    "YTO": ("圆通速递", "圆通快递", "圆通"),
    "YUNDA": ("韵达快递", "韵达速递", "韵达"),
    "STO": ("申通快递", "申通"),
    "SF": ("顺丰速运", "顺丰快递", "顺丰"),
    "JD": ("京东物流", "京东快递", "京东配送", "京东"),
    "EMS": ("中国邮政EMS", "邮政EMS", "EMS快递", "EMS", "中国邮政速递物流"),
    "YZPY": ("邮政快递包裹", "邮政包裹", "中国邮政", "邮政国内小包"),
    "JTEXPRESS": ("极兔速递", "极兔快递", "极兔", "J&T极兔", "J&T"),
    "DEPPON": ("德邦快递", "德邦物流", "德邦"),
    "BESTEXP": ("百世快递", "百世汇通", "汇通快递", "百世"),
    "CAINIAO": ("菜鸟速递", "丹鸟", "菜鸟"),
}

SOURCES = ("name", *REGISTRATION_CODES)


def _fold(text: str) -> str:
    """Full-width letters and digits to ASCII, no spaces, ASCII upper case: 'ＥＭＳ ' and 'ems' meet."""
    return "".join(unicodedata.normalize("NFKC", text).split()).upper()


def _lookup() -> dict[str, dict[str, str]]:
    tables: dict[str, dict[str, str]] = {}
    names = {_fold(code): code for code in CARRIERS}
    for code, display in CARRIERS.items():
        names[_fold(display)] = code
    for code, aliases in _NAMES.items():
        for alias in aliases:
            names[_fold(alias)] = code
    tables["name"] = names
    for vendor, codes in REGISTRATION_CODES.items():
        table = {_fold(v): k for k, v in codes.items()}
        table.update({_fold(k): v for k, v in _VENDOR_ALIASES.get(vendor, {}).items()})
        tables[vendor] = table
    return tables


_LOOKUP = _lookup()


def carrier_code(name_or_code: str, source: str = "name") -> str:
    """The canonical carrier code for a carrier name (``source="name"``: 中通快递, 中通, ZTO ...) or for an
    aggregator's code (``source`` = kuaidi100, aftership, 17track, kdniao). Raises ``UnknownCarrier``."""
    table = _LOOKUP.get(source)
    if table is None:
        raise ValueError(f"unknown carrier source {source!r}; expected one of {', '.join(SOURCES)}")
    key = _fold(name_or_code)
    code = table.get(key)
    if code is None and source != "name":
        code = _LOOKUP["name"].get(key)  # a canonical code or a Chinese name is understood from any source
    if code is None:
        raise UnknownCarrier(f"not a carrier parcelwatch knows ({len(name_or_code)} characters, source {source})")
    return code


def vendor_code(carrier: str, aggregator: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """The aggregator's code for a canonical carrier: the deployment's override (``subscriptions.carrier_codes``)
    first, then the table; None when the aggregator is to detect the carrier itself."""
    if overrides and carrier in overrides:
        return overrides[carrier]
    return REGISTRATION_CODES[aggregator].get(carrier)
