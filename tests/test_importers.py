"""Order exports -> order events: 千牛 GBK CSV, 抖店 XLSX (one row per item), 拼多多 UTF-8 CSV, and a mapping file for
an ERP's layout. Realistic files (tests/export_files.py) carry buyers' names, phones and streets: none may reach
an event, an error or the printed output."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from importers import cli
from importers.layouts import LayoutError, load_mapping

from .export_files import (
    BUYER_NAMES,
    BUYER_PHONES,
    STREETS,
    TAOBAO_HEADER,
    douyin_rows,
    taobao_rows,
    write_douyin_xlsx,
    write_pinduoduo_csv,
    write_taobao_csv,
)

EXPORTED_AT = "2026-12-01T00:00:00+08:00"


def args(*files: Path, **kw: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = [str(f) for f in files] + ["--shop", kw.pop("shop", "shop-a"), "--dry-run", "--exported-at", EXPORTED_AT]
    for key, value in kw.items():
        argv += [f"--{key.replace('_', '-')}", value]
    return parser.parse_args(argv)


def dry_run(*files: Path, **kw: Any) -> tuple[int, list[dict[str, Any]], str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(args(*files, **kw), out=out, err=err)
    return code, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def by_kind(events: list[dict[str, Any]], order_id: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        if ev["order_id"] == order_id:
            out.setdefault(ev["kind"], []).append(ev)
    return out


def assert_no_buyer_data(*texts: str) -> None:
    for text in texts:
        for secret in (*BUYER_NAMES, *BUYER_PHONES, *STREETS, "红旗路", "某街道"):
            assert secret not in text, secret


def test_taobao_gbk_export(tmp_path: Path) -> None:
    code, events, err = dry_run(write_taobao_csv(tmp_path / "ExportOrderList202612011200.csv"), platform="taobao")
    assert code == 0
    waiting = by_kind(events, "1930679858170001")
    assert list(waiting) == ["paid"]  # ="…" unwrapped; paid, not shipped yet
    assert waiting["paid"][0]["destination_province"] == "新疆" and waiting["paid"][0]["destination_city"] == "乌鲁木齐市"
    assert waiting["paid"][0]["event_time"] == "2026-11-01T12:15:40Z"  # China time
    shipped = by_kind(events, "1930679858170002")["shipped"][0]
    assert (shipped["carrier"], shipped["tracking_number"]) == ("ZTO", "73100012345678")  # "No:" dropped
    # Two parcels in one cell, one carrier named once: a split shipment, each parcel shipped; then confirmed.
    split = by_kind(events, "1930679858170003")
    assert [(e["carrier"], e["tracking_number"]) for e in split["shipped"]] == [("YTO", "YT7500000000001"), ("YTO", "YT7500000000002")]
    assert split["confirmed"][0]["event_time"] == "2026-10-29T10:00:00Z" and split["paid"][0]["order_value"] == 899.0
    # Closed after a refund: refunded, dated at the export (the file gives no close time).
    refunded = by_kind(events, "1930679858170004")
    assert list(refunded) == ["paid", "refunded"] and refunded["refunded"][0]["event_time"] == "2026-11-30T16:00:00Z"
    assert by_kind(events, "1930679858170005") == {}  # closed before payment: nothing to watch
    partial = by_kind(events, "1930679858170006")  # 50 of 300 refunded: the order goes on
    assert list(partial) == ["paid", "shipped", "confirmed"]
    assert "partial refunds (the order goes on): 1" in err and "unpaid orders (nothing to watch): 1" in err
    assert len({e["event_id"] for e in events}) == len(events)
    assert_no_buyer_data(json.dumps(events, ensure_ascii=False), err)


def test_a_reimport_sends_the_same_events(tmp_path: Path) -> None:
    path = write_taobao_csv(tmp_path / "orders.csv")
    first = dry_run(path, platform="taobao")[1]
    # A later export overlapping this one (one order moved on) re-sends the same events for the rest.
    rows = taobao_rows()
    rows[0].update({"订单状态": "卖家已发货，等待买家确认", "物流单号": "No:SF1400000000001", "物流公司": "顺丰速运",
                    "发货时间": "2026-11-02 10:00:00"})
    second = dry_run(write_taobao_csv(tmp_path / "later.csv", rows), platform="taobao")[1]
    assert [e for e in first if e["order_id"] != "1930679858170001"] == [e for e in second if e["order_id"] != "1930679858170001"]
    assert list(by_kind(second, "1930679858170001")) == ["paid", "shipped"]


def test_row_errors_name_row_and_column_never_the_content(tmp_path: Path) -> None:
    rows = taobao_rows()
    rows[1]["物流公司"] = "张三快递"  # unknown carrier (a mis-mapped name column would look like this)
    rows[2]["发货时间"] = "明天下午"
    rows[3]["订单编号"] = ""
    rows[5]["物流单号"] = f"No:{BUYER_PHONES[0]} 红旗路"
    code, events, err = dry_run(write_taobao_csv(tmp_path / "bad.csv", rows), platform="taobao")
    assert code == 1
    assert "row 3, column 物流公司: not a carrier parcelwatch knows" in err
    assert "row 4, column 发货时间: not a time" in err
    assert "row 5, column 订单编号: is empty" in err
    assert "row 7, column 物流单号: not a tracking number" in err
    assert "张三" not in err and "明天" not in err
    assert {e["order_id"] for e in events} == {"1930679858170001"}  # the orders with an error are left out whole
    assert_no_buyer_data(err, json.dumps(events, ensure_ascii=False))


def test_douyin_xlsx_items_split_and_partial_shipments_refunds(tmp_path: Path) -> None:
    code, events, err = dry_run(write_douyin_xlsx(tmp_path / "抖店订单.xlsx"), platform="douyin")
    assert code == 0
    first = by_kind(events, "6921000000000000001")
    # Three items: two shipped in two parcels (快递信息 in two styles), one still to ship.
    assert [(e["carrier"], e["tracking_number"], e["event_time"]) for e in first["shipped"]] == [
        ("ZTO", "73100000000101", "2026-11-01T10:00:00Z"), ("YTO", "YT7500000000102", "2026-11-02T01:00:00Z")]
    assert first["paid"][0]["order_value"] == 207.0 and first["paid"][0]["promised_ship_time"] == "2026-11-03T02:00:00Z"
    assert first["paid"][0]["destination_province"] == "广东" and "confirmed" not in first and "refunded" not in first
    whole = by_kind(events, "6921000000000000002")  # both items refunded: the order is refunded
    assert list(whole) == ["paid", "refunded"] and whole["refunded"][0]["event_time"] == "2026-11-02T04:00:00Z"
    part = by_kind(events, "6921000000000000003")  # one item delivered and confirmed, the other refunded
    assert list(part) == ["paid", "shipped", "confirmed"] and part["paid"][0]["destination_province"] == "西藏"
    assert "partly shipped orders: 1" in err and "partial refunds (the order goes on): 1" in err
    assert_no_buyer_data(json.dumps(events, ensure_ascii=False), err)


def test_an_order_number_excel_stored_as_a_number_is_refused(tmp_path: Path) -> None:
    rows = douyin_rows()
    rows[3][0] = rows[4][0] = 6.921e18  # Excel kept 15 digits of 6921000000000000002
    code, events, err = dry_run(write_douyin_xlsx(tmp_path / "excel.xlsx", rows), platform="douyin")
    assert code == 1 and "row 5, column 主订单编号: stored by Excel as a number" in err
    assert "6921000000000000002" not in {e["order_id"] for e in events}


def test_pinduoduo_utf8_bom_export(tmp_path: Path) -> None:
    code, events, err = dry_run(write_pinduoduo_csv(tmp_path / "pdd.csv"), platform="pinduoduo", origin_province="浙江")
    assert code == 0
    shipped = by_kind(events, "231120-123456789012345")["shipped"][0]
    assert (shipped["carrier"], shipped["tracking_number"], shipped["origin_province"]) == ("YUNDA", "YD4300000000001", "浙江")
    assert shipped["promised_ship_time"] == "2026-11-22T00:00:05Z" and shipped["order_value"] == 35.9
    assert list(by_kind(events, "231120-123456789012346")) == ["paid", "refunded"]
    assert list(by_kind(events, "231115-123456789012347")) == ["paid", "shipped", "confirmed"]
    assert_no_buyer_data(json.dumps(events, ensure_ascii=False), err)


ERP_MAPPING = """\
platform: other
carrier_names: kdniao
origin_province: 广东
columns:
  order_id: 平台单号
  paid_at: 付款时间
  shipped_at: 发货时间
  carrier: 快递编码
  tracking_number: [运单号, 快递单号]
  province: 收件省
  city: 收件市
  auto_confirm_at: 自动收货时间
  order_value: 实付
statuses:
  closed: [作废]
time_formats: ["%Y%m%d %H%M%S"]
"""


def test_a_mapping_file_reads_an_erp_export_with_its_own_codes(tmp_path: Path) -> None:
    mapping = tmp_path / "erp.yaml"
    mapping.write_text(ERP_MAPPING, encoding="utf-8")
    export = tmp_path / "erp.csv"
    export.write_text("ERP 订单导出 2026-12-01\n"  # a title above the header row
                      "平台单号,收件人,电话,收件省,收件市,详细地址,付款时间,发货时间,快递编码,运单号,自动收货时间,实付,状态\n"
                      f"E1001,{BUYER_NAMES[1]},{BUYER_PHONES[1]},广东省,广州市,{STREETS[0]},20261101 101500,20261101 180000,YD,"
                      "YD4300000000009,2026-11-11 18:00:00,88.5,已发货\n", encoding="gbk")
    code, events, err = dry_run(export, mapping=str(mapping))
    assert code == 0
    paid, shipped = events
    assert shipped["carrier"] == "YUNDA" and shipped["origin_province"] == "广东" and shipped["platform"] == "other"
    assert shipped["auto_confirm_deadline"] == "2026-11-11T10:00:00Z" and paid["event_time"] == "2026-11-01T02:15:00Z"
    assert "header in row 2" in err
    assert_no_buyer_data(json.dumps(events, ensure_ascii=False), err)


def test_a_carrier_the_vocabulary_lacks_is_kept_under_the_code_the_mapping_file_gives(tmp_path: Path) -> None:
    rows = taobao_rows()
    rows[1]["物流公司"] = "安能物流"
    export = write_taobao_csv(tmp_path / "orders.csv", rows)
    code, _events, err = dry_run(export, platform="taobao")
    assert code == 1 and "row 3, column 物流公司: not a carrier parcelwatch knows" in err
    mapping = tmp_path / "carriers.yaml"
    mapping.write_text("platform: taobao\nbased_on: taobao\ncarriers: {安能物流: ane}\n", encoding="utf-8")
    code, events, err = dry_run(export, mapping=str(mapping))
    assert code == 0, err
    assert "taobao:ane" in {e.get("carrier") for e in events if e["kind"] == "shipped"}


@pytest.mark.parametrize(("text", "key"), [
    ("columns: {order_id: 单号}\n", "platform"),
    ("platform: taobao\ncolumns: {order_id: 单号, buyer_phone: 电话}\n", "columns.buyer_phone"),
    ("platform: taobao\ncolumns: {paid_at: 付款时间}\n", "columns.order_id"),
    ("platform: taobao\nbased_on: amazon\n", "based_on"),
    ("platform: taobao\ncolumns: {order_id: 单号}\nstatuses: {closed: 作废}\n", "statuses.closed"),
    ("platform: taobao\ncolumns: {order_id: 单号}\ncarrier_names: sf\n", "carrier_names"),
    ("platform: taobao\ncolumns: {order_id: 单号}\nfields: {}\n", "fields"),
    ("platform: taobao\ncolumns: {order_id: 单号}\ncarriers: [安能物流]\n", "carriers"),
])
def test_mapping_file_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LayoutError) as err:
        load_mapping(path)
    assert err.value.key == key


def test_a_file_of_another_platform_is_refused_whole(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(args(write_pinduoduo_csv(tmp_path / "pdd.csv"), platform="taobao"), out=out, err=err)
    assert code == 2 and "no header row naming the order number (订单编号)" in err.getvalue() and out.getvalue() == ""


def test_numbers_excel_rewrote_or_spaced_are_refused_or_read_as_one(tmp_path: Path) -> None:
    """An order number saved back by Excel as 1.93068E+15 would merge different orders under one id; a tracking
    number written in groups ("7310 0012 3456 78") is one parcel, not four."""
    rows = taobao_rows()
    rows[1]["物流单号"] = "No:7310 0012 3456 78"
    rows[2]["订单编号"] = "1.93068E+15"
    rows[3]["订单编号"] = "1.93068E+15"
    rows[5]["订单编号"] = '="１９３０６７９８５８１７０００６"'  # full-width digits: the same order as half-width ones
    code, events, err = dry_run(write_taobao_csv(tmp_path / "resaved.csv", rows), platform="taobao")
    assert code == 1
    assert "row 4, column 订单编号: stored by Excel as a number" in err and "row 5, column 订单编号: stored by Excel" in err
    assert [(e["carrier"], e["tracking_number"]) for e in by_kind(events, "1930679858170002")["shipped"]] == [
        ("ZTO", "73100012345678")]
    assert "1.93068E+15" not in {e["order_id"] for e in events} and by_kind(events, "1930679858170006")
    # Two whole numbers apart by a space stay two parcels.
    rows = taobao_rows()
    rows[1]["物流单号"] = "73100012345678 73100012345679"
    _, events, _ = dry_run(write_taobao_csv(tmp_path / "two.csv", rows), platform="taobao")
    assert [e["tracking_number"] for e in by_kind(events, "1930679858170002")["shipped"]] == ["73100012345678", "73100012345679"]


def test_a_quote_left_open_stops_the_import_naming_its_line(tmp_path: Path) -> None:
    """A stray quote at the start of a cell made the csv reader take the rest of the file as one cell: rows were
    lost without a word, or (a long file) a traceback."""
    lines = [",".join(TAOBAO_HEADER)]
    for n, row in enumerate(taobao_rows() * 10):
        cells = [row.get(h, "").replace('="', "").replace('"', "").replace(",", "，") for h in TAOBAO_HEADER]
        cells[0] = f"19306798581{n:05d}"
        lines.append(",".join(cells))
    lines[3] = lines[3].replace("广东省深圳市", '"广东省深圳市', 1)
    path = tmp_path / "quote.csv"
    path.write_bytes("\r\n".join(lines).encode("gbk"))
    code, events, err = dry_run(path, platform="taobao")
    assert code == 2 and events == [] and "quote.csv: line 4: a cell opens a quote that is not closed" in err
    assert "Traceback" not in err
    assert_no_buyer_data(err)


def test_a_file_cut_off_inside_a_character_keeps_its_other_rows(tmp_path: Path) -> None:
    path = write_taobao_csv(tmp_path / "cut.csv", encoding="utf-8")
    path.write_bytes(path.read_bytes() + "19306798581700张".encode()[:-1])
    code, events, err = dry_run(path, platform="taobao")
    assert code == 1 and by_kind(events, "1930679858170002")["shipped"]
    assert "row 8, column 订单编号: is not text" in err


def test_a_tab_separated_export_under_a_title_line_is_read(tmp_path: Path) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\r\n")
    writer.writerow(TAOBAO_HEADER)
    writer.writerows([row.get(h, "") for h in TAOBAO_HEADER] for row in taobao_rows())
    path = tmp_path / "tabs.csv"
    path.write_text("淘宝订单报表 2026-12-01\r\n" + out.getvalue(), encoding="utf-8")
    code, events, _ = dry_run(path, platform="taobao")
    assert code == 0 and by_kind(events, "1930679858170002")["shipped"]


def test_an_item_row_without_its_order_number_leaves_its_order_out(tmp_path: Path) -> None:
    """A merged 主订单编号 cell leaves the second item's row empty: judged without that item, the order would be
    refunded whole although its other item shipped."""
    rows = douyin_rows()
    rows[4][0] = ""  # the second item of order …002 (the one refunded whole in the export)
    rows[3][22] = "退款成功"
    code, events, err = dry_run(write_douyin_xlsx(tmp_path / "merged.xlsx", rows), platform="douyin")
    assert code == 1 and "row 6, column 主订单编号: is empty" in err
    assert by_kind(events, "6921000000000000002") == {} and by_kind(events, "6921000000000000001")


def test_a_broken_sheet_inside_an_xlsx_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    import zipfile

    good = write_douyin_xlsx(tmp_path / "good.xlsx")
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, data[: len(data) // 2] if item.filename.endswith("sheet1.xml") else data)
    code, events, err = dry_run(broken, platform="douyin")
    assert code == 2 and events == [] and "broken.xlsx: row" in err and "not readable" in err


def test_register_parcels_names_a_missing_file_not_redis(tmp_path: Path) -> None:
    import asyncio

    import config
    from subscriptions.cli import namespace, register_parcels

    out, err = io.StringIO(), io.StringIO()
    missing = tmp_path / "nofile.jsonl"
    code = asyncio.run(register_parcels(config.load(env={}), "redis://127.0.0.1:9/0", "a test",
                                        namespace(files=[str(missing)], dry_run=True), out=out, err=err))
    assert code == 2 and f"{missing}: no such file" in err.getvalue() and "Redis" not in err.getvalue()
