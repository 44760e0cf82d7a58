"""The API's read nodes: the primary and the streaming replicas of ``FATURE_DATABASE_READ_URLS``.

Reads rotate over the replicas that are in rotation; with none (no replica configured, all
lagging or down) they go to the primary. Every ``FATURE_REPLICA_CHECK_SECONDS`` (and as soon
as the primary's ETL generation moves: ``poke()``) each replica is checked in one round trip:
its replay position, whether it answers, and the last ETL run it has replayed (its own
generation: the response cache key and ``asOf`` of answers read there never run ahead of what
it holds).

Lag: 0 when the replica has replayed everything the primary had written at the previous
check; otherwise the time since the first check that saw the primary at a WAL position the
replica has not replayed yet (measured on this process's monotonic clock, so the two
servers' clocks do not matter; the resolution is the check period). A replica whose lag
exceeds ``FATURE_REPLICA_MAX_LAG_SECONDS`` (default 10) or that does not answer leaves the
rotation until a check finds it caught up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from db.engine import DatabaseUnavailable
from db.reader import Database, sql
from db.settings import masked_url

log = logging.getLogger("fature.api")

_PRIMARY_LSN = sql("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0') AS lsn")
# One round trip per replica: replay position and the last ETL run it holds.
_REPLICA_STATE = sql(
    "SELECT pg_is_in_recovery() AS in_recovery, "
    "pg_wal_lsn_diff(COALESCE(pg_last_wal_replay_lsn(), '0/0'), '0/0') AS replayed_lsn, "
    "r.id AS run_id, r.source_as_of "
    "FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT id, source_as_of FROM etl.runs "
    "WHERE status = 'success' AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1) AS r ON true"
)
CHECK_TIMEOUT_SECONDS = 2.0
CATCH_UP_SECONDS = 0.05


@dataclass
class ReadNode:
    """One database the API reads. ``name``: "primary" or "replica<N>" (metrics labels);
    ``url``: its masked URL (logs, /readyz)."""

    name: str
    url: str
    database: Database
    primary: bool = False
    in_rotation: bool = True
    up: bool = True
    lag_seconds: float = 0.0
    run_id: int = 0
    as_of: datetime | None = None
    reason: str | None = None
    _behind: deque[tuple[Decimal, float]] = field(default_factory=deque)

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "in_rotation": self.in_rotation, "up": self.up,
                "lag_seconds": round(self.lag_seconds, 3), "run_id": self.run_id, "reason": self.reason}


class ReadNodes:
    """The primary and the replicas; ``choose()`` is the node of the next answer."""

    def __init__(self, primary: Database, replicas: dict[str, Database], *, max_lag_seconds: float = 10.0,
                 check_seconds: float = 1.0) -> None:
        primary_url = masked_url(primary.engine.url.render_as_string(hide_password=False))
        self.primary = ReadNode("primary", primary_url, primary, primary=True)
        self.replicas = [ReadNode(f"replica{i + 1}", url, database, in_rotation=False, up=False,
                                  reason="not checked yet")
                         for i, (url, database) in enumerate(replicas.items())]
        self.max_lag_seconds = max_lag_seconds
        self.check_seconds = check_seconds
        self._turn = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self.primary_run = 0  # the primary's newest ETL run, as the process knows it (poke())
        # Called after each check (the metrics' gauges).
        self.check_listeners: list[Callable[[ReadNodes], None]] = []

    @property
    def nodes(self) -> list[ReadNode]:
        return [self.primary, *self.replicas]

    def choose(self) -> ReadNode:
        """A replica in rotation (round robin), or the primary."""
        ready = [node for node in self.replicas if node.in_rotation]
        if not ready:
            return self.primary
        return ready[next(self._turn) % len(ready)]

    def other_than(self, node: ReadNode) -> ReadNode:
        """Where an answer cancelled or failed on ``node`` is computed again (once)."""
        if node.primary:
            return node
        ready = [other for other in self.replicas if other.in_rotation and other is not node]
        return ready[0] if ready else self.primary

    def failed(self, node: ReadNode, why: str) -> None:
        """A read found ``node`` down: out of rotation until the next check finds it well."""
        if not node.primary and node.in_rotation and why == "unavailable":
            node.in_rotation = node.up = False
            node.reason = "unavailable"
            log.warning("read replica %s out of rotation: %s", node.name, why)
            self.poke()

    def poke(self, primary_run: int | None = None) -> None:
        """Check now (the primary's ETL generation moved: learn when the replicas have it; until
        they do, they are checked every ``CATCH_UP_SECONDS``)."""
        if primary_run is not None:
            self.primary_run = max(self.primary_run, primary_run)
        self._poked.set()

    async def check(self) -> None:
        """Check every replica once (concurrently)."""
        if not self.replicas:
            return
        try:
            rows = await asyncio.wait_for(self.primary.database.fetch(_PRIMARY_LSN), CHECK_TIMEOUT_SECONDS)
            primary_lsn: Decimal | None = Decimal(rows[0].lsn)
        except (DatabaseUnavailable, TimeoutError):
            primary_lsn = None
        now = time.monotonic()
        await asyncio.gather(*(self._check(node, primary_lsn, now) for node in self.replicas))
        for listener in list(self.check_listeners):
            try:
                listener(self)
            except Exception:  # noqa: BLE001 - a gauge's bug must not stop the checks
                log.exception("a replica check listener failed")

    async def _check(self, node: ReadNode, primary_lsn: Decimal | None, now: float) -> None:
        try:
            rows = await asyncio.wait_for(node.database.fetch(_REPLICA_STATE), CHECK_TIMEOUT_SECONDS)
        except (DatabaseUnavailable, TimeoutError, OSError) as exc:
            self._set(node, False, False, "unavailable")
            log.debug("replica %s check failed: %s", node.name, type(exc).__name__)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. no etl.runs there: not a usable replica
            self._set(node, True, False, f"check failed: {type(exc).__name__}")
            return
        row = rows[0]
        replayed = Decimal(row.replayed_lsn)
        if primary_lsn is not None and primary_lsn > replayed:
            node._behind.append((primary_lsn, now))
        while node._behind and node._behind[0][0] <= replayed:
            node._behind.popleft()
        node.lag_seconds = now - node._behind[0][1] if node._behind else 0.0
        if row.run_id is not None and row.run_id > node.run_id:
            node.run_id, node.as_of = int(row.run_id), row.source_as_of
        if not row.in_recovery:
            self._set(node, True, True, None)  # a promoted replica is a primary: still readable
        elif node.lag_seconds > self.max_lag_seconds:
            self._set(node, True, False, f"lag above {self.max_lag_seconds:g} s")
        else:
            self._set(node, True, True, None)

    def _set(self, node: ReadNode, up: bool, in_rotation: bool, reason: str | None) -> None:
        if node.in_rotation != in_rotation:
            log.warning("read replica %s %s", node.name,
                        "in rotation" if in_rotation else f"out of rotation: {reason}")
        node.up, node.in_rotation, node.reason = up, in_rotation, reason

    def start(self) -> None:
        if self.replicas and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the checks must outlive any one failure
                log.exception("replica check failed")
            catching_up = any(node.up and node.run_id < self.primary_run for node in self.replicas)
            wait = min(CATCH_UP_SECONDS, self.check_seconds) if catching_up else self.check_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), wait)
            self._poked.clear()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close(self) -> None:
        """Close the replicas' connections and engines (the primary's belong to the app)."""
        await self.stop()
        for node in self.replicas:
            await node.database.close()
            await node.database.engine.dispose()
