"""Each aggregator's carrier codes → our canonical codes (models.CARRIERS)."""

from __future__ import annotations

KUAIDI100 = {
    "zhongtong": "ZTO", "yuantong": "YTO", "yunda": "YUNDA", "shentong": "STO", "shunfeng": "SF",
    "shunfengkuaiyun": "SF", "jd": "JD", "jingdongkuaiyun": "JD", "ems": "EMS", "youzhengguonei": "YZPY",
    "youzhengbk": "YZPY", "jtexpress": "JTEXPRESS", "debangwuliu": "DEPPON", "debangkuaidi": "DEPPON",
    "huitongkuaidi": "BESTEXP", "baishiwuliu": "BESTEXP", "cainiao": "CAINIAO",
}
AFTERSHIP = {
    "zto-express": "ZTO", "yto": "YTO", "yunda": "YUNDA", "sto": "STO", "sf-express": "SF", "jd": "JD",
    "jdl": "JD", "china-ems": "EMS", "china-post": "YZPY", "jtexpress-cn": "JTEXPRESS", "jtexpress": "JTEXPRESS",
    "deppon": "DEPPON", "bestex": "BESTEXP", "cainiao": "CAINIAO",
}
SEVENTEENTRACK = {
    # 17TRACK carrier keys as numbers (from its carrier list); names are accepted too.
    "190271": "ZTO", "190008": "YTO", "190009": "YUNDA", "190012": "STO", "100012": "SF", "190302": "JD",
    "3011": "EMS", "03011": "EMS", "190473": "JTEXPRESS", "190094": "DEPPON",
    "zto": "ZTO", "yto": "YTO", "yunda": "YUNDA", "sto": "STO", "sf": "SF", "jd": "JD", "ems": "EMS",
}


def canonical(table: dict[str, str], code: object) -> str | None:
    if code is None:
        return None
    return table.get(str(code).strip().lower())
