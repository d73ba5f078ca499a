"""Realistic order export files, written as the platforms write them (importers/layouts.py): 千牛's 订单报表
(GBK CSV, ="…" around long numbers, "No:" before tracking numbers, the whole address in one cell), 抖店's export
(XLSX, one row per 子订单, 快递信息, 省 / 市 columns, Excel dates), 拼多多's export (UTF-8 CSV with BOM).

Every file carries buyers' names, phones and streets, so that tests can check none of them leaves the file.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

BUYER_NAMES = ("王小明", "李娜", "张伟", "刘洋", "陈静")
BUYER_PHONES = ("13912345678", "13800001111", "15000002222", "18600003333", "13700004444")
STREETS = ("红旗路88号3单元501", "文一西路969号", "人民大道100号", "解放路1号院2号楼")

TAOBAO_HEADER = ["订单编号", "买家会员名", "买家支付宝账号", "买家应付货款", "买家应付邮费", "总金额", "买家实际支付金额",
                 "订单状态", "买家留言", "收货人姓名", "收货地址", "运送方式", "联系电话", "联系手机", "订单创建时间",
                 "订单付款时间", "宝贝标题", "宝贝种类", "物流单号", "物流公司", "订单备注", "宝贝总数量", "店铺名称",
                 "订单关闭原因", "退款金额", "确认收货时间", "发货时间"]


def taobao_rows() -> list[dict[str, str]]:
    """Six orders of one 千牛 export: waiting to ship; shipped; shipped in two parcels and confirmed (merged into one
    row: two numbers, one carrier); closed after a refund; closed before payment; confirmed with part refunded."""
    base = {"买家支付宝账号": "bu***@163.com", "买家应付邮费": "0.00", "运送方式": "快递", "联系电话": "", "宝贝种类": "1",
            "宝贝总数量": "1", "店铺名称": "好物小店", "订单备注": "", "买家留言": ""}
    return [
        {**base, "订单编号": '="1930679858170001"', "买家会员名": "tb_wxm", "买家应付货款": "129.00", "总金额": "129.00",
         "买家实际支付金额": "129.00", "订单状态": "买家已付款，等待卖家发货", "收货人姓名": BUYER_NAMES[0],
         "收货地址": f"新疆维吾尔自治区 乌鲁木齐市 天山区 {STREETS[0]}(830000)", "联系手机": f"'{BUYER_PHONES[0]}",
         "订单创建时间": "2026-11-01 20:15:03", "订单付款时间": "2026-11-01 20:15:40", "宝贝标题": "加厚羽绒服",
         "物流单号": "", "物流公司": "", "订单关闭原因": "订单未关闭", "退款金额": "0.00", "确认收货时间": "", "发货时间": ""},
        {**base, "订单编号": '="1930679858170002"', "买家会员名": "tb_lina", "买家应付货款": "59.90", "总金额": "59.90",
         "买家实际支付金额": "59.90", "订单状态": "卖家已发货，等待买家确认", "收货人姓名": BUYER_NAMES[1],
         "收货地址": f"浙江省 杭州市 西湖区 {STREETS[1]}(310000)", "联系手机": f"'{BUYER_PHONES[1]}",
         "订单创建时间": "2026-11-02 09:01:00", "订单付款时间": "2026/11/2 9:01", "宝贝标题": "保温杯",
         "物流单号": "No:73100012345678", "物流公司": "中通快递", "订单关闭原因": "订单未关闭", "退款金额": "0.00",
         "确认收货时间": "", "发货时间": "2026-11-02 17:30:00"},
        {**base, "订单编号": '="1930679858170003"', "买家会员名": "tb_zw", "买家应付货款": "899.00", "总金额": "899.00",
         "买家实际支付金额": "899.00", "订单状态": "交易成功", "收货人姓名": BUYER_NAMES[2],
         "收货地址": f"广东省深圳市南山区{STREETS[2]}", "联系手机": f"'{BUYER_PHONES[2]}",
         "订单创建时间": "2026-10-20 10:00:00", "订单付款时间": "2026-10-20 10:00:30", "宝贝标题": "沙发两件套",
         "物流单号": "No:YT7500000000001,No:YT7500000000002", "物流公司": "圆通速递", "订单关闭原因": "订单未关闭",
         "退款金额": "0.00", "确认收货时间": "2026-10-29 18:00:00", "发货时间": "2026-10-21 11:00:00", "宝贝总数量": "2"},
        {**base, "订单编号": '="1930679858170004"', "买家会员名": "tb_ly", "买家应付货款": "45.00", "总金额": "45.00",
         "买家实际支付金额": "45.00", "订单状态": "交易关闭", "收货人姓名": BUYER_NAMES[3],
         "收货地址": f"北京 北京市 朝阳区 {STREETS[3]}", "联系手机": f"'{BUYER_PHONES[3]}",
         "订单创建时间": "2026-11-03 08:00:00", "订单付款时间": "2026-11-03 08:00:20", "宝贝标题": "手机壳",
         "物流单号": "", "物流公司": "", "订单关闭原因": "买家申请退款", "退款金额": "45.00", "确认收货时间": "", "发货时间": ""},
        {**base, "订单编号": '="1930679858170005"', "买家会员名": "tb_cj", "买家应付货款": "19.90", "总金额": "19.90",
         "买家实际支付金额": "0.00", "订单状态": "交易关闭", "收货人姓名": BUYER_NAMES[4],
         "收货地址": f"四川省 成都市 武侯区 {STREETS[0]}", "联系手机": f"'{BUYER_PHONES[4]}",
         "订单创建时间": "2026-11-03 09:00:00", "订单付款时间": "", "宝贝标题": "数据线",
         "物流单号": "", "物流公司": "", "订单关闭原因": "买家未付款", "退款金额": "0.00", "确认收货时间": "", "发货时间": ""},
        {**base, "订单编号": '="1930679858170006"', "买家会员名": "tb_wxm", "买家应付货款": "300.00", "总金额": "300.00",
         "买家实际支付金额": "300.00", "订单状态": "交易成功", "收货人姓名": BUYER_NAMES[0],
         "收货地址": f"湖北省 恩施土家族苗族自治州 恩施市 {STREETS[1]}", "联系手机": f"'{BUYER_PHONES[0]}",
         "订单创建时间": "2026-10-25 12:00:00", "订单付款时间": "2026-10-25 12:00:10", "宝贝标题": "被子三件套",
         "物流单号": "No:SF1400000000006", "物流公司": "顺丰速运", "订单关闭原因": "订单未关闭", "退款金额": "50.00",
         "确认收货时间": "2026-11-01 10:00:00", "发货时间": "2026-10-25 16:00:00", "宝贝总数量": "3"},
    ]


def write_taobao_csv(path: Path, rows: list[dict[str, str]] | None = None, encoding: str = "gbk") -> Path:
    """千牛's 订单报表: GBK, comma-separated, every cell as the export writes it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TAOBAO_HEADER)
    for row in rows if rows is not None else taobao_rows():
        writer.writerow([row.get(h, "") for h in TAOBAO_HEADER])
    path.write_bytes(out.getvalue().encode(encoding))
    return path


DOUYIN_HEADER = ["主订单编号", "子订单编号", "选购商品", "商品规格", "商品数量", "商品ID", "商家编码", "商品单价", "订单应付金额",
                 "运费", "支付方式", "收件人", "收件人手机号", "省", "市", "区", "街道", "详细地址", "买家留言", "订单提交时间",
                 "支付完成时间", "订单状态", "售后状态", "取消原因", "承诺发货时间", "发货时间", "快递信息", "订单完成时间"]


def douyin_rows() -> list[list[object]]:
    """Three orders, one row per 子订单: one shipped in two parcels with a third item still to ship; one refunded
    whole (both items); one with one item refunded and the other delivered and confirmed."""
    t = datetime

    def row(main: str, sub: str, goods: str, value: float, who: int, province: str, city: str, paid: datetime,
            status: str, after: str, promise: datetime | None, shipped: datetime | None, express: str,
            done: datetime | None) -> list[object]:
        return [main, sub, goods, "默认", 1, "3578000111", "SKU-1", value, value, 0, "抖音支付", BUYER_NAMES[who],
                BUYER_PHONES[who], province, city, "某区", "某街道", STREETS[who % len(STREETS)], "", paid, paid, status,
                after, "", promise, shipped, express, done]

    return [
        row("6921000000000000001", "6921000000000000101", "卫衣", 99.0, 0, "广东省", "广州市", t(2026, 11, 1, 10), "已发货",
            "", t(2026, 11, 3, 10), t(2026, 11, 1, 18), "中通快递 73100000000101", None),
        row("6921000000000000001", "6921000000000000102", "裤子", 79.0, 0, "广东省", "广州市", t(2026, 11, 1, 10), "已发货",
            "", t(2026, 11, 3, 10), t(2026, 11, 2, 9), "【圆通速递】YT7500000000102", None),
        row("6921000000000000001", "6921000000000000103", "帽子", 29.0, 0, "广东省", "广州市", t(2026, 11, 1, 10), "待发货",
            "", t(2026, 11, 3, 10), None, "", None),
        row("6921000000000000002", "6921000000000000201", "台灯", 120.0, 1, "江苏省", "南京市", t(2026, 11, 2, 8), "已关闭",
            "退款成功", t(2026, 11, 4, 8), None, "", t(2026, 11, 2, 12)),
        row("6921000000000000002", "6921000000000000202", "灯泡", 15.0, 1, "江苏省", "南京市", t(2026, 11, 2, 8), "已关闭",
            "退款成功", t(2026, 11, 4, 8), None, "", t(2026, 11, 2, 12)),
        row("6921000000000000003", "6921000000000000301", "耳机", 199.0, 2, "西藏自治区", "拉萨市", t(2026, 10, 20, 8), "已完成",
            "", t(2026, 10, 22, 8), t(2026, 10, 20, 20), "极兔速递:JT0000000000301", t(2026, 10, 30, 8)),
        row("6921000000000000003", "6921000000000000302", "耳机套", 19.0, 2, "西藏自治区", "拉萨市", t(2026, 10, 20, 8), "已关闭",
            "退款成功", t(2026, 10, 22, 8), None, "", t(2026, 10, 21, 8)),
    ]


def write_douyin_xlsx(path: Path, rows: list[list[object]] | None = None) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "订单"
    sheet.append(DOUYIN_HEADER)
    for row in rows if rows is not None else douyin_rows():
        sheet.append(row)
    book.save(path)
    return path


PINDUODUO_HEADER = ["订单号", "订单状态", "商品", "商品id", "商品数量(件)", "商品总价(元)", "用户实付金额(元)", "商家实收金额(元)",
                    "收货人", "手机", "省", "市", "区", "街道", "支付时间", "拼单成功时间", "承诺发货时间", "发货时间", "确认收货时间",
                    "快递单号", "快递公司", "售后状态", "商家备注"]


def pinduoduo_rows() -> list[list[str]]:
    return [
        ["231120-123456789012345", "已发货，待签收", "纸巾 24包", "80000001", "1", "39.90", "35.90", "35.90", BUYER_NAMES[3],
         BUYER_PHONES[3], "浙江省", "杭州市", "余杭区", STREETS[1], "2026-11-20 08:00:00", "2026-11-20 08:00:05",
         "2026-11-22 08:00:05", "2026-11-20 16:00:00", "", "YD4300000000001", "韵达快递", "无售后或售后取消", ""],
        ["231120-123456789012346", "已取消", "拖把", "80000002", "1", "25.00", "25.00", "25.00", BUYER_NAMES[4], BUYER_PHONES[4],
         "内蒙古自治区", "呼和浩特市", "新城区", STREETS[2], "2026-11-20 09:00:00", "2026-11-20 09:00:05", "2026-11-22 09:00:05",
         "", "", "", "", "退款成功", ""],
        ["231115-123456789012347", "已签收", "收纳盒", "80000003", "2", "50.00", "45.00", "45.00", BUYER_NAMES[0], BUYER_PHONES[0],
         "山东省", "青岛市", "市南区", STREETS[3], "2026-11-15 10:00:00", "2026-11-15 10:00:05", "2026-11-17 10:00:05",
         "2026-11-15 19:00:00", "2026-11-19 12:00:00", "JT0000000000347", "极兔速递", "无售后或售后取消", ""],
    ]


def write_pinduoduo_csv(path: Path) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PINDUODUO_HEADER)
    writer.writerows(pinduoduo_rows())
    path.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"))
    return path
