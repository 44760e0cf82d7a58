"""The exports' query-string parameters: each failure a ``BadUserInput`` naming the
parameter, answered as a JSON error before the file starts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from resolvers.arguments import LEVELS, MAX_ID, aware
from resolvers.errors import BadUserInput

FORMATS = ("csv", "xlsx")
# Dates and instants are accepted a day inside Python's range (years 1..9999), so that the
# reports' day arithmetic and time-zone conversions never overflow.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def _out_of_range(name: str, value: str) -> BadUserInput:
    return BadUserInput(f"{name} is out of range (0001-01-02 to 9999-12-30), got {value[:40]!r}")


def parse_output(q: Any) -> str:
    """``format``: csv (the default) or xlsx; the CSV options make no sense in a workbook."""
    output = (q.get("format") or "csv").strip().lower()
    if output not in FORMATS:
        raise BadUserInput(f"format must be csv or xlsx, got {q.get('format', '')[:10]!r}")
    if output == "xlsx":
        for option in ("sep", "decimal"):
            if option in q:
                raise BadUserInput(f"{option} applies to format=csv only (a workbook has cells, "
                                   "its numbers are shown in the reader's locale)")
    return output


def check_known(q: Any, allowed: Iterable[str]) -> None:
    unknown = sorted(set(q.keys()) - {*allowed, "sep", "decimal", "format"})
    if unknown:
        raise BadUserInput(f"unknown parameter {unknown[0][:40]!r} for this report")


def id_param(value: str | None, name: str, required: bool = False) -> int | None:
    if value is None or value == "":
        if required:
            raise BadUserInput(f"{name} is required")
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise BadUserInput(f"{name} must be a positive integer id, got {value[:40]!r}")
    return int(text)


def level_param(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) < 3) or int(text) not in LEVELS:
        raise BadUserInput(f"level must be between 1 and 5, got {value[:10]!r}")
    return int(value)


def enum_param(value: str | None, name: str, kind: type[Enum], aliases: dict[str, str] | None = None) -> Any:
    """A member of ``kind`` by value or lower-case name (or an alias of a value)."""
    if value is None or value == "":
        return None
    text = value.strip().lower()
    text = (aliases or {}).get(text, text)
    for member in kind:
        if text in (member.value, member.name.lower()):
            return member
    allowed = "|".join(aliases or (m.name.lower() for m in kind))
    raise BadUserInput(f"{name} must be one of {allowed}, got {value[:20]!r}")


def date_param(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError as exc:
        raise BadUserInput(f"{name} must be a date YYYY-MM-DD, got {value[:40]!r}") from exc
    if not EARLIEST.date() <= day <= LATEST.date():
        raise _out_of_range(name, value)
    return day


def month_param(value: str | None) -> date:
    """``month``: required, YYYY-MM (or its first day)."""
    if not value:
        raise BadUserInput("month is required (YYYY-MM)")
    match = re.fullmatch(r"(\d{4})-(\d{2})(?:-01)?", value.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise BadUserInput(f"month must look like YYYY-MM, got {value[:20]!r}")
    return date(int(match.group(1)), int(match.group(2)), 1)


def bound_param(value: str | None, name: str, zone: ZoneInfo, end: bool) -> datetime | None:
    """A date (a local day: from its start, or to the start of the next) or an instant."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time(), zone)
        else:
            moment = datetime.fromisoformat(text)
            moment = moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
    except ValueError as exc:
        raise BadUserInput(f"{name} must be a date YYYY-MM-DD or an ISO 8601 instant, "
                           f"got {value[:40]!r}") from exc
    try:
        in_range = EARLIEST <= moment.astimezone(UTC) <= LATEST
    except OverflowError:
        in_range = False
    if not in_range:
        raise _out_of_range(name, value)
    if len(text) == 10 and end:
        moment = datetime.combine(moment.date() + timedelta(days=1), time(), zone)
    return aware(moment, zone)
