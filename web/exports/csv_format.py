"""The CSV cells of the exports: separators, decimal point or comma, and free text kept from
running as a spreadsheet formula.

Money is written from the database's exact decimals, never floats; enums in GraphQL's
upper-case spelling as in REST; instants ISO 8601 with offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from resolvers.errors import BadUserInput

_TEXT_CELLS = ("=", "+", "-", "@", "\t", "\r")
_PHONE_LIKE = re.compile(r"[+-][0-9 ().-]*")


@dataclass(frozen=True)
class CsvFormat:
    sep: str = ","
    decimal_comma: bool = False

    def money(self, value: Decimal) -> str:
        text = format(value, "f")
        return text.replace(".", ",") if self.decimal_comma else text

    def cell(self, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, Decimal):
            return self.money(value)
        if isinstance(value, float):  # never expected: money is Decimal end to end
            raise TypeError("floats are not exported")
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, Enum):
            return value.name
        return str(value)


def text_cell(value: str | None) -> str | None:
    """Free text as data, never a spreadsheet formula."""
    if value and value.startswith(_TEXT_CELLS) and not _PHONE_LIKE.fullmatch(value):
        return "'" + value
    return value


def parse_format(q: Any) -> CsvFormat:
    """``sep`` (``,`` default, ``;`` or ``tab``) and ``decimal`` (``point`` default or
    ``comma``: 1234,56, which needs ``sep=;`` or tab)."""
    raw_sep = q.get("sep", ",")
    seps = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "comma": ",", "semicolon": ";"}
    if raw_sep not in seps:
        raise BadUserInput(f"sep must be ',', ';' or 'tab', got {raw_sep[:10]!r}")
    sep = seps[raw_sep]
    raw_decimal = q.get("decimal", "point").lower()
    if raw_decimal not in ("point", "dot", ".", "comma", ","):
        raise BadUserInput(f"decimal must be 'point' or 'comma', got {raw_decimal[:10]!r}")
    comma = raw_decimal in ("comma", ",")
    if comma and sep == ",":
        raise BadUserInput("decimal=comma needs sep=; (or tab): a decimal comma in a comma-separated "
                           "file would split every amount in two")
    return CsvFormat(sep, comma)
