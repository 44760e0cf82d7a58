"""Now, for the rules that depend on the date: the system clock, or a fixed instant.

Which local day it is decides when a change of terms may take effect (tomorrow at the
earliest) and which months may be closed. The ETL never asks: what it computes depends on the
source history and the configuration history only, never on when it runs.

``FATURE_NOW`` (an ISO 8601 instant with its offset) fixes the clock for a whole process, for
tests and reproducible demos; the app and the CLI apply it at start (``set_now``). Tests
move it with ``set_now``. Unset, the system clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

_fixed: datetime | None = None


def set_now(instant: datetime | None) -> None:
    """Fix the clock at ``instant`` (aware), or go back to the system clock with None."""
    global _fixed
    if instant is not None and instant.tzinfo is None:
        raise ValueError("the clock needs an aware instant (with its UTC offset)")
    _fixed = instant


def now() -> datetime:
    """The current instant (aware, UTC)."""
    return _fixed.astimezone(UTC) if _fixed is not None else datetime.now(UTC)


def local_today(tz: str) -> date:
    """The business date now in time zone ``tz``."""
    return now().astimezone(ZoneInfo(tz)).date()
