"""Every source's carrier codes → parcelwatch's canonical codes (``domain.vocabulary.CARRIERS``).

``resolve(source, code)`` is the one place that turns a carrier as any source writes it into a canonical code:
the source's own code (kuaidi100 ``com``, kdniao ``ShipperCode``, AfterShip slug, 17TRACK carrier key), a
canonical code in any case, or a carrier name (中通快递, 顺丰, FedEx ...). A carrier nobody maps is kept under
its source's own code, ``source:code`` (``kuaidi100:zhongtongkuaiyun``): it is never rejected; the adapters
count it (``parcelwatch_ingest_unknown_carriers_total``, by source). Freight lines (快运), 丰网-style sub-brands
and cross-border lines stay under their source's code on purpose: their lanes are not the parent network's.

Where each table comes from:
- kuaidi100 ``com``: kuaidi100's 快递公司编码 table (api.kuaidi100.com, "下载编码表格"; the codes as listed in
  its client libraries, e.g. dongasai/kuaidi100 ``src/Constant/All.php``). Always lower case.
- kdniao ``ShipperCode``: kdniao's 快递公司编码 list (kdniao.com API docs: ZTO, YTO, STO, YD, SF, JD, EMS, YZPY,
  HTKY, JTSD, DBL ...). Upper case.
- AfterShip slugs: AfterShip's supported-couriers list (aftership.com/docs/tracking/others/supported-couriers).
- 17TRACK keys: 17TRACK's carrier list ``apicarrier.all.json`` (res.17track.net/asset/carrier/info/), e.g. 3011
  China Post (中国邮政), 3013 China EMS, 100012 SF Express, 190455 ZTO Express, 190157 YTO Express.
"""

from __future__ import annotations

from domain.vocabulary import canonical_carrier, carrier_source

KUAIDI100: dict[str, str] = {
    "zhongtong": "ZTO", "yuantong": "YTO", "yunda": "YUNDA", "shentong": "STO", "shunfeng": "SF",
    "shunfengkuaiyun": "SF", "jd": "JD", "jingdongkuaiyun": "JD", "ems": "EMS", "emsguoji": "EMS",
    "youzhengguonei": "YZPY", "youzhengbk": "YZPY", "youzhengdsbk": "YZPY", "jtexpress": "JTEXPRESS",
    "jitu": "JTEXPRESS", "debangwuliu": "DEPPON", "debangkuaidi": "DEPPON", "huitongkuaidi": "BESTEXP",
    "baishiwuliu": "BESTEXP", "cainiao": "CAINIAO", "danniao": "CAINIAO", "fedex": "FEDEX", "lianbangkuaidi": "FEDEX", "ups": "UPS",
    "usps": "USPS", "dhl": "DHL", "dhlen": "DHL",
}
KDNIAO: dict[str, str] = {
    "zto": "ZTO", "yto": "YTO", "yd": "YUNDA", "sto": "STO", "sf": "SF", "jd": "JD", "ems": "EMS", "yzpy": "YZPY",
    "jtsd": "JTEXPRESS", "dbl": "DEPPON", "dblky": "DEPPON", "htky": "BESTEXP", "fedex": "FEDEX", "ups": "UPS", "usps": "USPS",
    "dhl": "DHL",
}
AFTERSHIP: dict[str, str] = {
    "zto-express": "ZTO", "yto": "YTO", "yunda": "YUNDA", "sto": "STO", "sf-express": "SF", "jd": "JD",
    "jdl": "JD", "china-ems": "EMS", "china-post": "YZPY", "jtexpress-cn": "JTEXPRESS", "jtexpress": "JTEXPRESS",
    "deppon": "DEPPON", "bestex": "BESTEXP", "cainiao": "CAINIAO", "fedex": "FEDEX", "ups": "UPS", "usps": "USPS",
    "dhl": "DHL",
}
SEVENTEENTRACK: dict[str, str] = {
    "3011": "YZPY", "3013": "EMS", "100012": "SF", "190766": "SF", "190455": "ZTO", "190157": "YTO",
    "190324": "STO", "191197": "YUNDA", "191121": "JD", "190442": "JTEXPRESS", "190174": "DEPPON",
    "191076": "CAINIAO", "100003": "FEDEX", "100002": "UPS", "21051": "USPS", "100001": "DHL",
}
# Source -> its own codes (keys lower case). Sources without a table (our own JSON, the shop platforms) name
# carriers by canonical code or by name.
ALIASES: dict[str, dict[str, str]] = {
    "kuaidi100": KUAIDI100, "kdniao": KDNIAO, "aftership": AFTERSHIP, "17track": SEVENTEENTRACK,
}
# How a file or an ERP may name carriers: by name (a canonical code or 中通快递 ...), or by a source's codes.
NAMING_SOURCES: tuple[str, ...] = ("name", *ALIASES)


def resolve(source: str, code: object) -> str:
    """The canonical code for ``code`` as ``source`` writes it, else ``source:code``. A value already kept under
    a known source's code (``kuaidi100:jtexpress``, as a dead letter replayed after a table grew) is looked up in
    that source's table. ValueError when ``code`` is empty or has no letters or digits."""
    if code is None or isinstance(code, bool) or not isinstance(code, (str, int)):
        raise ValueError("is required (a carrier code or name)")
    text = str(code).strip()
    if not text:
        raise ValueError("is required (a carrier code or name)")
    table = ALIASES.get(source)
    if table is not None:
        hit = table.get(text.lower())
        if hit is not None:
            return hit
    prefix, sep, rest = text.partition(":")
    if sep and prefix in ALIASES:
        hit = ALIASES[prefix].get(rest.strip().lower())
        if hit is not None:
            return hit
    return canonical_carrier(text, carrier_source(source))
