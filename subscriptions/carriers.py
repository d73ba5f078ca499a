"""The codes an aggregator's registration API takes for each canonical carrier.

``vendor_code(carrier, aggregator, overrides)``: canonical code -> kuaidi100 ``com``, AfterShip ``slug``,
17TRACK carrier key, kdniao ``ShipperCode``. The other direction (any source's code or a carrier's name ->
canonical code) is ``ingest.carriers.resolve``: one vocabulary for pushes, imports and registrations.

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

from collections.abc import Mapping

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

def vendor_code(carrier: str, aggregator: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """The aggregator's code for a canonical carrier: the deployment's override (``subscriptions.carrier_codes``)
    first, then the table; None when the aggregator is to detect the carrier itself."""
    if overrides and carrier in overrides:
        return overrides[carrier]
    return REGISTRATION_CODES[aggregator].get(carrier)
