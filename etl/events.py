"""In-process events: what a committed ETL cycle changed, for the cache and metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

log = logging.getLogger("fature.etl.events")


@dataclass(frozen=True)
class EtlCommitted:
    run_id: int
    mode: str
    source_as_of: datetime | None
    affiliate_ids: frozenset[int]


Listener = Callable[[EtlCommitted], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener`` after every committed cycle; returns the unsubscribe function."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def publish(event: EtlCommitted) -> None:
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:  # a listener's bug must never undo or hide a committed run
            log.exception("an ETL event listener failed")
