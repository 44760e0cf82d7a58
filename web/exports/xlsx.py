"""The XLSX writer of the exports (``format=xlsx``): a report as a workbook, in constant memory.

The same rows and cells as the CSV in one worksheet (another every 1,048,575 rows, Excel's
limit), written by xlsxwriter in constant-memory mode to a temporary file that is streamed
back once complete (a zip is only whole at its end). Money cells are numbers written from
the exact decimal text (never through a float) with a 2-decimal format; a spreadsheet holds
them as doubles, exact to the cent up to 15 significant digits (larger amounts are written
as text). Dates are date cells, instants ISO 8601 text with offset, as in the CSV.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import aclosing
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, BinaryIO

import xlsxwriter

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_MAX_ROWS = 1_048_576  # per worksheet, the header included
_EXACT_DIGITS = 15  # a double holds any decimal of up to 15 significant digits exactly
_FILE_CHUNK = 256 * 1024


class XlsxReport:
    """One report as a workbook on disk, written row by row in constant memory."""

    def __init__(self, path: str, name: str, header: list[str]) -> None:
        self.book = xlsxwriter.Workbook(path, {
            "constant_memory": True,  # each row goes to disk when the next one starts
            "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False,
        })
        self.money = self.book.add_format({"num_format": "#,##0.00"})
        self.day = self.book.add_format({"num_format": "yyyy-mm-dd"})
        self.bold = self.book.add_format({"bold": True})
        self.name, self.header = name, header
        self._next_sheet()

    def _next_sheet(self) -> None:
        n = len(self.book.worksheets()) + 1
        self.sheet = self.book.add_worksheet(self.name if n == 1 else f"{self.name} {n}")
        self.sheet.freeze_panes(1, 0)
        for col, title in enumerate(self.header):
            self.sheet.write_string(0, col, title, self.bold)
        self.row = 1

    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        for values in rows:
            if self.row >= XLSX_MAX_ROWS:
                self._next_sheet()
            for col, value in enumerate(values):
                self._cell(col, value)
            self.row += 1

    def _cell(self, col: int, value: Any) -> None:
        sheet, row = self.sheet, self.row
        if value is None:
            return
        if isinstance(value, bool):
            sheet.write_boolean(row, col, value)
        elif isinstance(value, Decimal):
            if len(value.as_tuple().digits) <= _EXACT_DIGITS:
                # xlsxwriter writes the number's own text ("{:.16G}"): the exact decimal, no float
                sheet.write_number(row, col, value, self.money)
            else:
                sheet.write_string(row, col, format(value, "f"))
        elif isinstance(value, int):
            if abs(value) < 10**_EXACT_DIGITS:
                sheet.write_number(row, col, value)
            else:
                sheet.write_string(row, col, str(value))
        elif isinstance(value, float):  # never expected: money is Decimal end to end
            raise TypeError("floats are not exported")
        elif isinstance(value, datetime):
            sheet.write_string(row, col, value.isoformat())  # an instant: its offset matters
        elif isinstance(value, date):
            sheet.write_datetime(row, col, value, self.day)
        elif isinstance(value, Enum):
            sheet.write_string(row, col, value.name)
        else:
            sheet.write_string(row, col, str(value))

    def close(self) -> None:
        self.book.close()


async def write_workbook(
    chunks: AsyncGenerator[Sequence[Sequence[Any]], None], sheet_name: str, header: list[str]
) -> BinaryIO:
    """The whole workbook of ``chunks`` of rows (closed however this ends) in a temporary
    file, open for reading and already unlinked (gone from the disk when the answer ends,
    however it ends). The writing runs in a thread."""
    async with aclosing(chunks) as rows:
        fd, path = tempfile.mkstemp(prefix="fature-export-", suffix=".xlsx")
        os.close(fd)
        try:
            report = XlsxReport(path, sheet_name, header)
            async for chunk in rows:
                await asyncio.to_thread(report.write_rows, chunk)
            await asyncio.to_thread(report.close)
            return await asyncio.to_thread(open, path, "rb")
        finally:
            os.unlink(path)


async def file_chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    """A finished workbook's bytes, read in a thread chunk by chunk; the file closed at the end."""
    try:
        while part := await asyncio.to_thread(file.read, _FILE_CHUNK):
            yield part
    finally:
        file.close()
