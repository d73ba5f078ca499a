"""Province and city out of a full receiving address; the rest of the address (district, street, house) is
dropped here and never leaves this function.

Exports write the address as one cell, with spaces (千牛: "吉林省 通化市 柳河县 柳河镇…(135300)") or without
("广东省深圳市南山区…"), province in full or short ("广西壮族自治区", "广西"), municipalities once or twice
("北京 北京市 朝阳区…").
"""

from __future__ import annotations

import unicodedata

from domain.vocabulary import PROVINCES

MUNICIPALITIES = ("北京", "天津", "上海", "重庆")
# How a prefecture-level name ends (a bare 州 does not: 郑州市, 广州市).
CITY_ENDINGS = ("自治州", "地区", "市", "盟")
MAX_CITY_CHARS = 12

# Every way a province starts an address, longest first so "内蒙古自治区" wins over "内蒙古".
_PREFIXES: list[tuple[str, str]] = sorted(
    [(name, short) for short, fulls in PROVINCES.items() for name in (short, *fulls)], key=lambda p: -len(p[0]))


def region_of(address: str) -> tuple[str | None, str | None]:
    """(province short name, city) of an address, each None when it cannot be told."""
    text = unicodedata.normalize("NFKC", address).strip()
    for prefix, short in _PREFIXES:
        if text.startswith(prefix):
            return short, _city(short, text[len(prefix):])
    return None, None


def _city(province: str, rest: str) -> str | None:
    rest = rest.lstrip(" ,，-")
    if province in MUNICIPALITIES:
        return province + "市"
    tokens = rest.split()
    head = tokens[0] if tokens else ""
    # The first name that ends like a prefecture: 深圳市南山区 -> 深圳市, 大兴安岭地区漠河市 -> 大兴安岭地区.
    ends = [head.find(e) + len(e) for e in CITY_ENDINGS if head.find(e) > 0]
    end = min(ends, default=0)
    return head[:end] if 0 < end <= MAX_CITY_CHARS else None
