"""Where each fact sits in a platform's order export: the built-in layouts, and mapping files for the others.

**None of the three platforms publishes its export file as a specification.** 千牛 (Taobao/Tmall), 抖店 and
拼多多商家后台 each let the seller pick fields in an export dialog and write a CSV or XLSX whose header row is
the fields' names; the layouts below list those names as the exports write them (several per fact where the
platforms have used more than one). A file whose headers differ (another export version, an ERP's export,
columns renamed by hand) is read with a mapping file (``--mapping``, ``load_mapping``) naming its headers.

Facts, by field name (all optional but ``order_id``):

| field | what |
| --- | --- |
| order_id | the platform's order number (a 子订单 row names its 主订单) |
| status | the order's (or sub-order's) status text |
| paid_at, shipped_at, confirmed_at, closed_at | times (China time): paid, shipped, confirmed received, closed |
| carrier, tracking_number | the carrier's name and the tracking number (several per cell for several parcels) |
| express | carrier and number in one cell (抖店 快递信息: "中通快递 7310…;圆通速递 YT…") |
| address | the whole receiving address: only its province and city are kept |
| province, city | the destination province and city, where the export has them as columns |
| promised_ship_at, auto_confirm_at | the platform's promised ship time and auto-confirm deadline |
| order_value | what the buyer paid (summed over the rows of an order when rows are items) |
| refund_status, refund_amount | after-sale status and refunded amount |
| category | a category parcelwatch's thresholds know (furniture, fresh ...) |

The buyer's name, phone and street have no field: they are never read (the address cell is read only to
find its province and city).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from domain.vocabulary import PLATFORMS, normalise_province
from ingest.carriers import NAMING_SOURCES as CARRIER_SOURCES

FIELDS = ("order_id", "status", "paid_at", "shipped_at", "confirmed_at", "closed_at", "carrier", "tracking_number",
          "express", "address", "province", "city", "promised_ship_at", "auto_confirm_at", "order_value",
          "refund_status", "refund_amount", "category")


class LayoutError(ValueError):
    """A mapping file that cannot be used: ``key`` names the place in the file."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


def clean(text: str) -> str:
    """A header or status as compared: full-width forms folded (，→,), no spaces."""
    return "".join(unicodedata.normalize("NFKC", text).split())


@dataclass(frozen=True)
class Layout:
    name: str
    platform: str
    # field -> the headers it may have, first found in the file wins
    columns: dict[str, tuple[str, ...]]
    # status texts (compared cleaned) meaning: the row is closed or cancelled; the money went back; the buyer
    # confirmed receipt (empty: a confirmation time counts on any row not closed)
    closed: frozenset[str] = frozenset()
    refunded: frozenset[str] = frozenset()
    confirmed: frozenset[str] = frozenset()
    # one row per order, or one per item (sub-order) with several rows per order
    rows_are: Literal["orders", "items"] = "orders"
    # how the carrier column names carriers: by name (中通快递), or by an aggregator's code (an ERP export)
    carrier_names: str = "name"
    origin_province: str | None = None
    time_formats: tuple[str, ...] = ()
    source: str = "built-in"
    # carrier names the vocabulary does not know -> the code to keep them under (a mapping file's ``carriers``)
    carriers: dict[str, str] = field(default_factory=dict)

    def headers(self, name: str) -> tuple[str, ...]:
        return self.columns.get(name, ())


def _statuses(*texts: str) -> frozenset[str]:
    return frozenset(clean(t) for t in texts)


# 千牛 卖家中心 → 已卖出的宝贝 → 批量导出 → 订单报表 (ExportOrderList*.csv, GBK), one row per order. The same for
# Tmall. 物流单号 may hold several numbers ("No:7310…,No:YT…") with as many names in 物流公司.
TAOBAO = Layout(
    "taobao", "taobao",
    {
        "order_id": ("订单编号",),
        "status": ("订单状态",),
        "paid_at": ("订单付款时间", "付款时间"),
        "shipped_at": ("发货时间", "卖家发货时间"),
        "confirmed_at": ("确认收货时间",),
        "closed_at": ("订单关闭时间", "交易关闭时间"),
        "carrier": ("物流公司",),
        "tracking_number": ("物流单号", "运单号"),
        "address": ("收货地址", "修改后的收货地址"),
        "province": ("收货省份",),
        "city": ("收货城市",),
        "promised_ship_at": ("承诺发货时间", "最晚发货时间"),
        "auto_confirm_at": ("自动确认收货时间", "超时确认收货时间"),
        "order_value": ("买家实际支付金额", "买家实付金额", "总金额"),
        "refund_status": ("退款状态",),
        "refund_amount": ("退款金额",),
    },
    closed=_statuses("交易关闭", "已关闭", "交易已关闭"),
    refunded=_statuses("退款成功", "退款完成"),
    confirmed=_statuses("交易成功"),
)
TMALL = replace(TAOBAO, name="tmall", platform="tmall")

# 抖店 订单管理 → 批量导出 (CSV or XLSX, UTF-8), one row per 子订单 (item); 快递信息 names carrier and number.
DOUYIN = Layout(
    "douyin", "douyin",
    {
        "order_id": ("主订单编号",),
        "status": ("订单状态",),
        "paid_at": ("支付完成时间", "支付时间"),
        "shipped_at": ("发货时间",),
        "confirmed_at": ("订单完成时间", "确认收货时间"),
        "closed_at": ("订单关闭时间", "售后完结时间", "商家退款时间", "订单完成时间"),
        "carrier": ("快递公司", "物流公司"),
        "tracking_number": ("快递单号", "物流单号", "运单号"),
        "express": ("快递信息", "物流信息"),
        "province": ("省",),
        "city": ("市",),
        "address": ("收货地址",),
        "promised_ship_at": ("承诺发货时间", "预约发货时间"),
        "auto_confirm_at": ("自动确认收货时间", "预计自动确认收货时间"),
        "order_value": ("订单应付金额", "商品实付金额"),
        "refund_status": ("售后状态",),
        "refund_amount": ("退款金额",),
    },
    closed=_statuses("已关闭", "已取消", "交易关闭"),
    refunded=_statuses("退款成功", "退货退款成功", "已退款"),
    confirmed=_statuses("已完成"),
    rows_are="items",
)

# 拼多多商家后台 → 订单查询 → 导出 (CSV or XLSX), one row per order; 省 / 市 as columns.
PINDUODUO = Layout(
    "pinduoduo", "pinduoduo",
    {
        "order_id": ("订单号",),
        "status": ("订单状态",),
        "paid_at": ("支付时间", "订单成交时间", "拼单成功时间"),
        "shipped_at": ("发货时间",),
        "confirmed_at": ("确认收货时间",),
        "closed_at": ("订单关闭时间", "售后完成时间"),
        "carrier": ("快递公司",),
        "tracking_number": ("快递单号",),
        "province": ("省",),
        "city": ("市",),
        "address": ("收货地址",),
        "promised_ship_at": ("承诺发货时间",),
        "auto_confirm_at": ("自动确认收货时间", "预计自动确认收货时间"),
        "order_value": ("用户实付金额(元)", "用户实付金额", "商家实收金额(元)"),
        "refund_status": ("售后状态",),
        "refund_amount": ("退款金额(元)", "退款金额"),
    },
    closed=_statuses("已取消", "交易关闭", "已关闭"),
    refunded=_statuses("退款成功", "退货退款成功", "已退款"),
)

BUILT_IN = {layout.name: layout for layout in (TAOBAO, TMALL, DOUYIN, PINDUODUO)}


def load_mapping(path: str | Path) -> Layout:
    """A mapping file (YAML) -> a layout; ``LayoutError`` names the key at fault. Format:

    ```yaml
    platform: pinduoduo            # required: taobao tmall douyin pinduoduo jd kuaishou xiaohongshu other
    based_on: pinduoduo            # optional: start from a built-in layout, replace what is listed below
    rows_are: orders               # orders | items
    carrier_names: name            # name | kuaidi100 | aftership | 17track | kdniao (an ERP's codes)
    carriers:                      # names parcelwatch does not know -> the code to keep them under (optional)
      安能物流: ane
    origin_province: 广东           # where the shop ships from (optional)
    columns:                       # field -> the header in your file, or a list of headers
      order_id: 订单号
      tracking_number: [快递单号, 运单号]
    statuses:                      # closed / refunded / confirmed: status texts meaning that
      closed: [已取消]
    time_formats: ["%Y%m%d %H%M%S"] # extra time formats, strptime style (China time)
    ```
    """
    where = str(path)
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LayoutError(where, f"cannot read it: {exc}") from None
    except yaml.YAMLError as exc:
        raise LayoutError(where, f"is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise LayoutError(where, "must hold a mapping (platform:, columns: ...)")
    known = {"platform", "based_on", "rows_are", "carrier_names", "carriers", "origin_province", "columns", "statuses",
             "time_formats"}
    for key in doc:
        if key not in known:
            raise LayoutError(str(key), f"unknown key; expected one of {', '.join(sorted(known))}")
    platform = doc.get("platform")
    if platform not in PLATFORMS:
        raise LayoutError("platform", f"is required, one of {', '.join(PLATFORMS)}")
    base_name = doc.get("based_on")
    if base_name is not None and base_name not in BUILT_IN:
        raise LayoutError("based_on", f"unknown layout; expected one of {', '.join(BUILT_IN)}")
    base = BUILT_IN[base_name] if base_name else Layout("", platform, {})
    columns = dict(base.columns)
    raw_columns = doc.get("columns") or {}
    if not isinstance(raw_columns, dict):
        raise LayoutError("columns", "must map fields to headers")
    for name, headers in raw_columns.items():
        if name not in FIELDS:
            raise LayoutError(f"columns.{name}", f"unknown field; expected one of {', '.join(FIELDS)}")
        listed = [headers] if isinstance(headers, str) else headers
        if not isinstance(listed, list) or not listed or not all(isinstance(h, str) and h.strip() for h in listed):
            raise LayoutError(f"columns.{name}", "expected a header or a list of headers")
        columns[name] = tuple(listed)
    if not columns.get("order_id"):
        raise LayoutError("columns.order_id", "is required: the header of the order number")
    statuses = doc.get("statuses") or {}
    if not isinstance(statuses, dict):
        raise LayoutError("statuses", "must map closed / refunded / confirmed to lists of status texts")
    picked: dict[str, frozenset[str]] = {}
    for name in ("closed", "refunded", "confirmed"):
        listed = statuses.get(name)
        if listed is None:
            picked[name] = getattr(base, name)
        elif isinstance(listed, list) and all(isinstance(t, str) for t in listed):
            picked[name] = _statuses(*listed)
        else:
            raise LayoutError(f"statuses.{name}", "expected a list of status texts")
    for name in statuses:
        if name not in ("closed", "refunded", "confirmed"):
            raise LayoutError(f"statuses.{name}", "unknown; expected closed, refunded or confirmed")
    rows_are = doc.get("rows_are", base.rows_are)
    if rows_are not in ("orders", "items"):
        raise LayoutError("rows_are", "expected orders or items")
    carrier_names = doc.get("carrier_names", base.carrier_names)
    if carrier_names not in CARRIER_SOURCES:
        raise LayoutError("carrier_names", f"expected one of {', '.join(CARRIER_SOURCES)}")
    origin = doc.get("origin_province")
    if origin is not None and normalise_province(str(origin)) is None:
        raise LayoutError("origin_province", "not a province of China (write e.g. 广东)")
    formats = doc.get("time_formats") or []
    if not isinstance(formats, list) or not all(isinstance(f, str) and "%" in f for f in formats):
        raise LayoutError("time_formats", "expected a list of strptime formats such as \"%Y%m%d %H%M%S\"")
    carriers = doc.get("carriers") or {}
    if not isinstance(carriers, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                 for k, v in carriers.items()):
        raise LayoutError("carriers", "expected carrier name: code pairs (e.g. 安能物流: ane)")
    extra: dict[str, Any] = {"origin_province": normalise_province(str(origin)) if origin else base.origin_province,
                             "carriers": {**base.carriers, **{k.strip(): v.strip() for k, v in carriers.items()}}}
    return Layout(f"mapping {Path(path).name}", platform, columns, picked["closed"], picked["refunded"], picked["confirmed"],
                  rows_are, carrier_names, time_formats=(*base.time_formats, *formats), source=where, **extra)


@dataclass
class Binding:
    """A layout bound to a file's header row: field -> the (column index, header) pairs present, in the
    layout's order of preference."""

    layout: Layout
    columns: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    @classmethod
    def of(cls, layout: Layout, header: list[str]) -> Binding:
        index: dict[str, int] = {}
        for i, name in enumerate(header):
            index.setdefault(clean(name), i)
        binding = cls(layout)
        for name in FIELDS:
            present = [(index[clean(h)], h) for h in layout.headers(name) if clean(h) in index]
            if present:
                binding.columns[name] = present
        return binding

    def value(self, name: str, cells: list[Any]) -> tuple[Any, str]:
        """The first non-empty cell of ``name`` in a row, with its header ("" and the first header when none)."""
        present = self.columns.get(name, ())
        for i, header in present:
            cell = cells[i] if i < len(cells) else None
            if cell is not None and not is_empty(cell):
                return cell, header
        return "", present[0][1] if present else name


EMPTY = {"", "-", "--", "—", "null", "NULL", "None"}


def is_empty(cell: Any) -> bool:
    return isinstance(cell, str) and cell.strip() in EMPTY
