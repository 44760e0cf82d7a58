"""Argument checks shared by resolvers: ids, page sizes, keyset cursors, levels, ranges.

Every failure is a ``BadUserInput`` whose message names the argument and the rule.
Cursors are opaque to clients: base64url of a small JSON array ``[list tag, sort key...]``;
the tag makes a cursor from another list (or another order) a clear error, not a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from resolvers.errors import BadUserInput

MAX_ID = 2**63 - 1
LEVELS = range(1, 6)
# A cursor's decimal as the database's numeric columns hold them (plain digits, no exponent).
_DECIMAL = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,10})?")


def parse_id(value: object, name: str = "id") -> int:
    """An affiliate/user id: a positive integer given as ID (string or number)."""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise BadUserInput(f"{name} must be a positive integer id, got {str(value)[:40]!r}")
    return int(text)


def check_first(first: int | None, max_page_size: int, default: int = 20) -> int:
    if first is None:
        return default
    if not 0 <= first <= max_page_size:
        raise BadUserInput(f"first must be between 0 and {max_page_size}, got {first}")
    return first


def check_level(level: int | None) -> int | None:
    if level is not None and level not in LEVELS:
        raise BadUserInput(f"level must be between 1 and 5, got {level}")
    return level


def check_range(start: Any, end: Any, names: tuple[str, str] = ("from", "to")) -> None:
    if start is not None and end is not None and start > end:
        raise BadUserInput(f"{names[0]} ({start.isoformat()}) is after {names[1]} ({end.isoformat()})")


def aware(moment: datetime | None, zone: ZoneInfo, name: str = "from") -> datetime | None:
    """A DateTime argument without an offset is read in the business time zone; one that
    falls outside the representable instants (year 1..9999 in UTC) is a ``BadUserInput``."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    try:
        moment.astimezone(UTC)
    except OverflowError as exc:
        raise BadUserInput(f"{name} is out of range: {moment.isoformat()}") from exc
    return moment


def _key_text(value: object) -> object:
    if isinstance(value, Decimal | datetime | date):
        return value.isoformat() if not isinstance(value, Decimal) else str(value)
    return value


def encode_cursor(tag: str, *key: object) -> str:
    raw = orjson.dumps([tag, *(_key_text(v) for v in key)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, tag: str, types: Sequence[Callable[[Any], Any]], name: str = "after"
) -> tuple[Any, ...] | None:
    """The sort key in ``cursor``, converted by ``types``; None when no cursor was given."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(payload, list) or payload[0] != tag or len(payload) != len(types) + 1:
            raise ValueError("not a cursor of this list")
        return tuple(convert(v) for convert, v in zip(types, payload[1:], strict=True))
    except (ValueError, TypeError, IndexError, InvalidOperation, OverflowError, binascii.Error,
            orjson.JSONDecodeError, UnicodeEncodeError) as exc:
        raise BadUserInput(
            f"{name} is not a valid cursor for this list (use an endCursor or cursor it returned)"
        ) from exc


def as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -MAX_ID <= value <= MAX_ID:
        raise ValueError("expected a 64-bit integer")
    return value


def as_decimal(value: object) -> Decimal:
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise ValueError("expected a plain decimal string")
    return Decimal(value)


def as_datetime(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("expected a timestamp")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("expected an offset")
    moment.astimezone(UTC)  # OverflowError outside year 1..9999 in UTC
    return moment
