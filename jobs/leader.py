"""The ETL worker's leader lock: one scheduler in a cluster, and a standby that takes over.

Every ``fature etl worker`` campaigns for one PostgreSQL session-level advisory lock
(``LEADER_LOCK_KEY``, distinct from the per-cycle ``etl.sync.ETL_LOCK_KEY``) on a dedicated
connection of its own, and runs the schedule only while it holds it. Why PostgreSQL and not a
Redis lease: the lock lives where the writes go, so it needs nothing more than the primary the
worker needs anyway; it ends exactly when its session ends (no lease to renew, no clock to
trust, no window in which two leaders both think their lease holds); and Redis stays optional.

How fast a standby takes over (``TAKEOVER_SECONDS``, docs/deploy.md):
- the leader's process dies (kill -9, OOM, crash) on a live machine: its kernel closes the
  socket, PostgreSQL ends the session at once and frees the lock; a standby tries every
  ``ATTEMPT_SECONDS``, so it leads within about that (measured: tests/jobs/test_leader.py);
- the leader's machine or network goes away (no FIN ever arrives): the lock's session carries
  server-side TCP keepalives and a user timeout (``SESSION_SETTINGS``), so PostgreSQL drops it
  within ``DEAD_PEER_SECONDS``; the standby leads by the next attempt after that.
The cycle a dead leader was running dies with its own connection: its transaction rolls back,
and the next cycle marks its run abandoned (``etl.runs``). The new leader waits (up to
``CYCLE_LOCK_WAIT_SECONDS``) for that cycle's lock to go, then runs a cycle at once. On a
machine loss that cycle's connection lingers until the server's own keepalive settings drop it
(docs/deploy.md sets them in postgresql.conf); meanwhile the new leader's cycles are skipped as
busy, never doubled.

The leader probes its lock connection every ``PROBE_SECONDS`` (answer within
``PROBE_TIMEOUT_SECONDS``); a connection that closes or stops answering means the lock may be
gone, and the worker stops scheduling at once, then campaigns again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from db.engine import DatabaseUnavailable, describe
from db.settings import Settings, masked_url, plain_url
from etl.sync import ETL_LOCK_KEY
from jobs.scheduler import EtlScheduler, start_scheduler

log = logging.getLogger("fature.jobs")

LEADER_LOCK_KEY = 0x4641545552450002
ATTEMPT_SECONDS = 1.0
PROBE_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 3.0
RECONNECT_SECONDS = 2.0
CYCLE_LOCK_WAIT_SECONDS = 60.0
# Server side of the lock's session: a dead peer is dropped after 5 s idle + 3 probes 2 s apart,
# or when sent data stays unacknowledged for 10 s.
SESSION_SETTINGS = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
    "application_name": "fature etl worker (leader lock)",
}
DEAD_PEER_SECONDS = 11.0
# The stated takeover bounds (docs/deploy.md): a dead process, a dead machine.
TAKEOVER_SECONDS = ATTEMPT_SECONDS + 1.0
TAKEOVER_MACHINE_SECONDS = DEAD_PEER_SECONDS + ATTEMPT_SECONDS + 1.0


@dataclass
class LeaderLock:
    """The lock held on its own connection; ``lost`` is set when it may no longer be held."""

    connection: asyncpg.Connection
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    _watcher: asyncio.Task[None] | None = None

    def watch(self) -> None:
        self.connection.add_termination_listener(lambda *_: self.lost.set())
        self._watcher = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        while not self.lost.is_set():
            await asyncio.sleep(PROBE_SECONDS)
            try:
                await self.connection.fetchval("SELECT 1", timeout=PROBE_TIMEOUT_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means the session may be gone
                log.error("leader lock connection failed (%s)", describe(exc))
                self.lost.set()

    async def release(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
        with contextlib.suppress(Exception):
            await self.connection.close(timeout=2)
        if not self.connection.is_closed():
            self.connection.terminate()


async def _lock_connection(robust_url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(plain_url(robust_url), timeout=10,
                                     server_settings=SESSION_SETTINGS)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailable(f"cannot connect to {masked_url(robust_url)}: {describe(exc)}") from exc


async def acquire(robust_url: str, *, on_wait: Callable[[], None] | None = None) -> LeaderLock:
    """Wait until this process holds the leader lock (retrying across database outages)."""
    waiting_said = False
    while True:
        try:
            conn = await _lock_connection(robust_url)
        except DatabaseUnavailable as exc:
            log.warning("leader lock: %s; retrying", exc)
            await asyncio.sleep(RECONNECT_SECONDS)
            continue
        try:
            while True:
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY):
                    lock = LeaderLock(conn)
                    lock.watch()
                    return lock
                if not waiting_said:
                    waiting_said = True
                    log.info("another ETL worker leads; standing by")
                    if on_wait is not None:
                        on_wait()
                await asyncio.sleep(ATTEMPT_SECONDS)
        except asyncio.CancelledError:
            conn.terminate()
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("leader lock: %s; retrying", describe(exc))
            conn.terminate()
            await asyncio.sleep(RECONNECT_SECONDS)


async def _cycle_lock_free(lock: LeaderLock) -> None:
    """Wait (at most ``CYCLE_LOCK_WAIT_SECONDS``) until no cycle holds the ETL lock: the dead
    leader's cycle ends with its session, and the catch-up cycle would be skipped as busy."""
    deadline = asyncio.get_running_loop().time() + CYCLE_LOCK_WAIT_SECONDS
    while not lock.lost.is_set() and asyncio.get_running_loop().time() < deadline:
        try:
            free = await lock.connection.fetchval(
                "SELECT CASE WHEN pg_try_advisory_lock($1) THEN pg_advisory_unlock($1) ELSE false END",
                ETL_LOCK_KEY,
                timeout=PROBE_TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001 - the probe notices a dead connection too
            return
        if free:
            return
        await asyncio.sleep(ATTEMPT_SECONDS)
    log.info("an ETL cycle still holds the cycle lock; scheduling anyway (busy cycles are skipped)")


def identity() -> str:
    """This worker in logs: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def lead_forever(
    settings: Settings,
    robust_url: str,
    operation_url: str,
    *,
    announce: Callable[[str], None] = lambda _text: None,
) -> None:
    """Campaign, schedule while leading, stop scheduling the moment the lock may be lost, and
    campaign again; until cancelled. ``announce`` gets one line per change of role."""
    while True:
        lock = await acquire(robust_url, on_wait=lambda: announce(
            f"ETL worker {identity()} standing by: another worker leads"))
        scheduler: EtlScheduler | None = None
        try:
            announce(f"ETL worker {identity()} holds the leader lock")
            await _cycle_lock_free(lock)
            # The dead leader may have missed cycles: the first one runs now.
            scheduler = start_scheduler(settings, robust_url, operation_url, catch_up=True)
            announce(f"ETL worker {identity()} leads: {', '.join(scheduler.jobs())}")
            await lock.lost.wait()
            announce(f"ETL worker {identity()} lost the leader lock: scheduling stopped")
        finally:
            if scheduler is not None:
                await scheduler.shutdown()
            await lock.release()
