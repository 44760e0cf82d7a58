"""How fresh the data is, and the response cache's generation.

The generation is the id of the last committed ETL run: monotonic and the same in every
worker, so cached answers are shared across workers (Redis) and a commit makes every older
entry unreachable at once (no ``clear()``). It moves synchronously on the in-process
``EtlCommitted`` event (the scheduler runs in the API process), and a cheap poll of
``etl.runs`` catches runs committed by other processes (another worker, ``fature etl``).
The same reads feed the ETL metrics and ``extensions.asOf``.

Entry point for commits heard elsewhere (the Redis bus, another worker): ``on_commit(event)``
with an ``etl.events.EtlCommitted`` means "run N committed on the primary"; call it from the
event loop's thread (no await needed). It moves this process's *primary* generation and makes
the replica checks look at once (``advance_listeners`` -> ``db.replicas.ReadNodes.poke``).

With read replicas this generation is the primary's, not what every answer uses: an answer
read on a replica is keyed and dated by the run that replica was last seen to hold
(``web.state.ApiState.node_snapshot``), then by the run its own snapshot read
(``db.snapshot``), so no answer is newer than the data it read, and no cached answer is
served for a generation its node does not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from db.engine import DatabaseUnavailable
from db.reader import Database, sql
from db.settings import plain_url
from etl import runs
from etl.events import EtlCommitted
from web.metrics import Metrics

log = logging.getLogger("fature.api")

_LAST_SUCCESS = sql(runs.LAST_SUCCESS)
_FINISHED_SINCE = sql(runs.finished_after_sql(":after"))
_LAST_FINISHED_ID = sql(runs.LAST_FINISHED_ID)


@dataclass(frozen=True)
class Snapshot:
    """What one request sees: the cache generation and the data's as-of instant."""

    generation: int
    as_of: datetime | None
    as_of_text: str | None


class Freshness:
    def __init__(self, database: Database, metrics: Metrics) -> None:
        self.database = database
        self.metrics = metrics
        self.snapshot = Snapshot(0, None, None)
        self.last_success_at: datetime | None = None
        self._last_seen_run = 0
        self._task: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._listener_task: asyncio.Task[None] | None = None
        # Called with each new generation, whichever way it arrived (the in-process event, NOTIFY,
        # the poll): the live updates (web/subscriptions.py) push from here.
        self.advance_listeners: list[Callable[[int, datetime | None], None]] = []

    def _advance(self, run_id: int, as_of: datetime | None) -> None:
        if run_id > self.snapshot.generation:
            self.snapshot = Snapshot(run_id, as_of, as_of.isoformat() if as_of is not None else None)
            for listener in list(self.advance_listeners):
                try:
                    listener(run_id, as_of)
                except Exception:  # noqa: BLE001 - a listener's bug must not stop the generation
                    log.exception("a data generation listener failed")

    async def load(self) -> None:
        """The last success and the newest finished run id; best effort (the database may be down)."""
        try:
            rows = await self.database.fetch(_LAST_SUCCESS)
            if rows:
                self._advance(rows[0].id, rows[0].source_as_of)
                self.last_success_at = rows[0].finished_at
            finished = await self.database.fetch(_LAST_FINISHED_ID)
            self._last_seen_run = max(self._last_seen_run, int(finished[0].id))
        except DatabaseUnavailable:
            log.warning("data freshness unknown: the robust database is unavailable")

    def on_commit(self, event: EtlCommitted) -> None:
        """``EtlCommitted`` listener: the generation moves before the ETL call returns."""
        self._advance(event.run_id, event.source_as_of)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = loop.create_task(self.refresh())

    async def refresh(self) -> None:
        """Runs finished since the last look: metrics, and the generation if one succeeded."""
        try:
            rows = await self.database.fetch(_FINISHED_SINCE, {"after": self._last_seen_run})
        except DatabaseUnavailable:
            return
        for row in rows:
            self._last_seen_run = max(self._last_seen_run, row.id)
            self.metrics.etl_runs.labels(row.mode, row.status).inc()
            if row.status == "success":
                self._advance(row.id, row.source_as_of)
                self.last_success_at = row.finished_at
                self.metrics.etl_rows.inc(float(row.rows or 0))
                if row.seconds is not None:
                    self.metrics.etl_duration.observe(float(row.seconds))

    def start(self, poll_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        if poll_seconds > 0:
            self._task = loop.create_task(self._poll(poll_seconds))
        # Runs committed by other processes arrive by NOTIFY within milliseconds of their
        # commit; the poll above stays as the fallback while the listener is disconnected.
        self._listener_task = loop.create_task(self._listen())

    async def _listen(self) -> None:
        url = plain_url(self.database.engine.url.render_as_string(hide_password=False))

        def notified(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
            # "<run id> <source as-of>": the generation moves now, before any round trip.
            run_id, _, as_of = payload.partition(" ")
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(as_of).astimezone(UTC) if as_of else None
                self._advance(int(run_id), moment)
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.get_running_loop().create_task(self.refresh())

        reconnecting = False  # the first time, load() has just read the latest run
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(url, timeout=5)
                closed = asyncio.Event()
                connection.add_termination_listener(lambda *_, done=closed: done.set())
                await connection.add_listener(runs.COMMIT_CHANNEL, notified)
                if reconnecting:
                    await self.refresh()  # whatever committed while we were not listening
                while not closed.is_set():
                    # A half-open connection never says it closed: probe it now and then.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(closed.wait(), timeout=30)
                    if not closed.is_set():
                        await connection.fetchval("SELECT 1", timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep listening across outages
                log.warning("ETL commit listener disconnected; retrying")
            finally:
                reconnecting = True
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close()
            await asyncio.sleep(2)

    async def _poll(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the poll must outlive any one failure
                log.exception("freshness poll failed")

    async def stop(self) -> None:
        for task in (self._task, self._refreshing, self._listener_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def as_of(self) -> Any:
        return self.snapshot.as_of
