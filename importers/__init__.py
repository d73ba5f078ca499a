"""Orders from the platforms' own export files: 千牛 (Taobao/Tmall), 抖店 (Douyin), 拼多多 (Pinduoduo), or any
export through a mapping file.

- ``read.py``: CSV (UTF-8 or GBK) and XLSX, the header row found, rows numbered as the spreadsheet shows them;
- ``layouts.py``: where each fact sits, per platform, and the mapping files for other layouts;
- ``address.py``: province and city from an address (the rest is dropped);
- ``convert.py``: rows -> paid / shipped / confirmed / refunded / closed events, errors by row and column;
- ``cli.py``: ``python app.py import-orders`` / ``python -m importers``.

The buyer's name, phone and street never leave the file: no field reads them, the address is reduced to its
province and city as it is read, and no message quotes a cell.
"""
