"""Reading an export file: CSV (UTF-8, UTF-8 with BOM, or GBK/GB18030 as 千牛 writes it; comma or tab) or
XLSX, its header row found among the first rows, each data row handed on with its row number as the seller's
spreadsheet shows it. Cells are text; Excel numbers and dates are turned back into the text the platform
wrote, and a long number Excel could not keep exactly (an order id or tracking number stored as a number) is
marked so it is refused instead of imported with wrong digits.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .layouts import clean

HEADER_SEARCH_ROWS = 20  # exports may put a title or a note above the header row
# A quoted cell may hold line breaks (an address), never this many: beyond it, a quote was left open and the
# rest of the file would be read as one cell.
MAX_LINES_PER_ROW = 20
_UNCLOSED = "{}: line {}: a cell opens a quote that is not closed, so the rows after it would be read as one cell: fix that cell"


class FileError(ValueError):
    """The file cannot be read as an export at all."""


class LossyNumber(str):
    """A cell Excel stored as a number too long for its 15 significant digits: the digits shown may be wrong."""


@dataclass
class Sheet:
    header_row: int  # 1-based, as the spreadsheet shows it
    header: list[str]
    total_rows: int | None  # data rows, when known before reading them
    rows: Iterator[tuple[int, list[Any]]]


def open_export(path: Path, id_headers: tuple[str, ...]) -> Sheet:
    """The header row (the first row naming one of ``id_headers``) and the data rows after it."""
    if not path.is_file():
        raise FileError(f"{path}: no such file")
    with path.open("rb") as fh:
        magic = fh.read(4)
    rows, total = _xlsx(path) if magic == b"PK\x03\x04" else _csv(path)
    wanted = {clean(h) for h in id_headers}
    for number, cells in rows:
        if any(isinstance(c, str) and clean(c) in wanted for c in cells):
            header = [c if isinstance(c, str) else "" for c in cells]
            return Sheet(number, header, None if total is None else max(0, total - number), rows)
        if number >= HEADER_SEARCH_ROWS:
            break
    raise FileError(f"{path.name}: no header row naming the order number ({' / '.join(id_headers)}) in its first "
                    f"{HEADER_SEARCH_ROWS} rows: not this platform's export, or its headers differ (write a mapping file)")


def decode(raw: bytes) -> str:
    """UTF-8 (with or without BOM) when it is, else GB18030 (a superset of GBK, what 千牛 writes). A file cut
    off inside its last character (a copy stopped short) keeps its other rows: the last one then fails alone."""
    bom = raw.startswith(b"\xef\xbb\xbf")
    try:
        return raw[3:].decode("utf-8") if bom else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.end == len(raw) - (3 if bom else 0) and exc.reason == "unexpected end of data":
            return raw[3 if bom else 0 : len(raw) - (exc.end - exc.start)].decode("utf-8") + "\ufffd"
        if bom:
            raise FileError(f"marked UTF-8 but is not (byte {exc.start + 3})") from None
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise FileError(f"neither UTF-8 nor GBK (byte {exc.start})") from None


def _csv(path: Path) -> tuple[Iterator[tuple[int, list[Any]]], int | None]:
    try:
        text = decode(path.read_bytes())
    except FileError as exc:
        raise FileError(f"{path.name}: {exc}") from None
    # Tabs or commas, by the lines the header is searched in (a title line above it may have neither).
    head = [line for line in text.splitlines()[:HEADER_SEARCH_ROWS] if line.strip()]
    delimiter = "\t" if sum(line.count("\t") for line in head) > sum(line.count(",") for line in head) else ","
    total = text.count("\n") + (0 if text.endswith("\n") else 1)

    def rows() -> Iterator[tuple[int, list[Any]]]:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        line = 0
        try:
            for number, cells in enumerate(reader, start=1):
                if reader.line_num - line > MAX_LINES_PER_ROW:
                    raise FileError(_UNCLOSED.format(path.name, line + 1))
                line = reader.line_num
                yield number, [_text_cell(c) for c in cells]
        except csv.Error:
            raise FileError(_UNCLOSED.format(path.name, line + 1)) from None

    return rows(), total


def _text_cell(cell: str) -> str:
    """What a CSV cell means: 千牛 writes long numbers as ="1930…" (or with a leading ' or tab) so Excel keeps
    them as text."""
    value = cell.strip().lstrip("\t'")
    if value.startswith('="') and value.endswith('"'):
        value = value[2:-1]
    elif value.startswith("="):
        value = value[1:]
    return value.strip()


def _xlsx(path: Path) -> tuple[Iterator[tuple[int, list[Any]]], int | None]:
    try:
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - zip or XML trouble of any kind: the file is not readable
        raise FileError(f"{path.name}: not a readable XLSX file ({type(exc).__name__})") from None
    sheet = book.active
    if sheet is None:
        raise FileError(f"{path.name}: the workbook has no sheet")

    def rows() -> Iterator[tuple[int, list[Any]]]:
        number = 0
        try:
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield number, [_xlsx_cell(v) for v in values]
        except Exception as exc:  # noqa: BLE001 - the sheet's XML or zip entry broken part-way: read lazily
            raise FileError(f"{path.name}: row {number + 1}: not readable ({type(exc).__name__})") from None
        finally:
            book.close()

    return rows(), sheet.max_row


def _xlsx_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        # (openpyxl gives a float for a number written with a point or an exponent, as Excel saves one it
        # rounded to 15 digits; a whole number written as such comes back an exact int)
        if value.is_integer():
            text = str(int(value))
            return LossyNumber(text) if abs(value) >= 1e15 else text
        return repr(value)
    return str(value).strip()
