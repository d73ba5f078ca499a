"""How fast an order export is read into order events: a synthetic 千牛 订单报表 (GBK CSV, the columns the
export writes, buyers' data included) of ``--rows`` orders, converted as ``import-orders --dry-run`` does.

    .venv/bin/python -m bench.importer --rows 50000

Prints rows per second for reading and converting (the sending is the broker's), and the events made.
"""

from __future__ import annotations

import argparse
import csv
import io
import tempfile
import time
from pathlib import Path

HEADER = ["订单编号", "买家会员名", "订单状态", "收货人姓名", "收货地址", "联系手机", "订单付款时间", "物流单号", "物流公司",
          "买家实际支付金额", "退款金额", "确认收货时间", "发货时间"]
CARRIERS = ("中通快递", "圆通速递", "韵达快递", "申通快递", "顺丰速运", "极兔速递")
PLACES = ("浙江省 杭州市 西湖区", "广东省深圳市南山区", "新疆维吾尔自治区 乌鲁木齐市 天山区", "北京 北京市 朝阳区", "四川省 成都市 武侯区")


def write_export(path: Path, rows: int) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for i in range(rows):
        shipped = i % 4 != 0
        confirmed = i % 4 == 3
        writer.writerow([
            f'="19306798581{i:05d}"', f"tb_{i}", "交易成功" if confirmed else "卖家已发货，等待买家确认" if shipped else "买家已付款，等待卖家发货",
            "王小明", f"{PLACES[i % len(PLACES)]} 某路{i}号", f"'139{i:08d}", "2026-11-01 10:00:00",
            f"No:7310{i:010d}" if shipped else "", CARRIERS[i % len(CARRIERS)] if shipped else "", "99.00", "0.00",
            "2026-11-08 10:00:00" if confirmed else "", "2026-11-01 18:00:00" if shipped else ""])
    path.write_bytes(out.getvalue().encode("gbk"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.importer")
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args(argv)
    from importers import cli

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ExportOrderList.csv"
        write_export(path, args.rows)
        options = argparse.Namespace(files=[str(path)], platform="taobao", mapping=None, shop="shop-a", origin_province=None,
                                     exported_at="2026-12-01T00:00:00+08:00")
        size = path.stat().st_size
        started = time.perf_counter()
        events, report = cli.convert(options, None)
        seconds = time.perf_counter() - started
    print(f"import-orders: {report.rows} rows ({size / 1e6:.1f} MB GBK) -> "
          f"{len(events)} events in {seconds:.2f} s: {report.rows / seconds:,.0f} rows/s; "
          f"errors {len(report.errors)}; {dict(report.events)}")


if __name__ == "__main__":
    main()
