"""The roles: `fature etl worker` under the leader lock (jobs/leader.py), and the API without a
scheduler (`fature serve` with FATURE_ETL_SCHEDULER_ENABLED=false).

Two real worker processes: one leads and is killed with SIGKILL in the middle of a cycle (held
on a lock of the operation database); the standby takes over within the stated time, its cycle
completes, and the abandoned run is on record as failed, nothing of it committed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

import jobs.leader as leader
from app import create_app
from db.settings import Settings
from jobs.scheduler import EtlScheduler
from tests.support.factories import Operation, fetch

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """`fature etl worker` in its own process group; its output lines with their arrival time."""

    def __init__(self, robust_url: str, operation_url: str, data_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_")}
        env.update({
            "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
            "FATURE_DATABASE_URL": robust_url, "FATURE_OPERATION_DATABASE_URL": operation_url,
            "FATURE_DATA_DIR": str(data_dir), "FATURE_BACKUP_ENABLED": "false",
            "FATURE_ETL_INTERVAL_MINUTES": "60",
        })
        self.process = subprocess.Popen([sys.executable, "-m", "cli", "etl", "worker"], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.time(), line.rstrip()))

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    async def said(self, text: str, seconds: float) -> float:
        """When a line holding ``text`` arrived (time.time())."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for moment, line in list(self.lines):
                if text in line:
                    return moment
            assert self.process.poll() is None, f"the worker exited:\n{self.output()}"
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {text!r} within {seconds} s:\n{self.output()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@contextmanager
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.kill()


async def wait_for(robust_url: str, query: str, seconds: float, *args: object) -> list[asyncpg.Record]:
    deadline = time.monotonic() + seconds
    while True:
        rows = await fetch(robust_url, query, *args)
        if rows or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def test_the_standby_worker_takes_over_a_leader_killed_mid_cycle(
    robust_url: str, operation_url: str, tmp_path: Path
) -> None:
    op = await Operation.open(operation_url)
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.close()
    # The leader's first cycle stops mid-way on this lock (its transaction open, its run row in).
    holder = await asyncpg.connect(operation_url)
    hold = holder.transaction()
    await hold.start()
    await holder.execute("LOCK TABLE cadastro IN ACCESS EXCLUSIVE MODE")
    with workers() as started:
        first = Worker(robust_url, operation_url, tmp_path / "first")
        started.append(first)
        await first.said("leads:", 60)
        abandoned = await wait_for(robust_url, "SELECT id FROM etl.runs WHERE status = 'running'", 30)
        assert abandoned, first.output()
        waiting = await wait_for(operation_url, "SELECT pid FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND wait_event_type = 'Lock'", 30)
        assert waiting, "the leader's cycle is not waiting on the held lock"
        second = Worker(robust_url, operation_url, tmp_path / "second")
        started.append(second)
        await second.said("standing by", 60)
        await asyncio.sleep(1.5)  # a standby keeps standing by while the leader lives
        assert "holds the leader lock" not in second.output()

        killed_at = time.time()
        first.kill()
        took_over = await second.said("holds the leader lock", 30) - killed_at
        print(f"leader killed -> standby holds the leader lock in {took_over:.2f} s "
              f"(stated {leader.TAKEOVER_SECONDS:.0f} s)")
        assert took_over < leader.TAKEOVER_SECONDS
        await second.said("leads:", 30)
        await hold.rollback()
        await holder.close()
        done = await wait_for(robust_url, "SELECT id FROM etl.runs WHERE status = 'success'", 60)
        assert done, second.output()
        # SIGTERM (systemctl stop, docker stop): the worker stops and its lock is free at once.
        second.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.process.wait, 15)
        assert second.process.returncode == 0 and "Traceback" not in second.output(), second.output()
        assert second.lines[-1][1] == "ETL worker stopped"
        free = await fetch(robust_url, "SELECT pg_try_advisory_lock($1) AS taken", leader.LEADER_LOCK_KEY)
        assert free[0]["taken"], second.output()
    runs = await fetch(robust_url, "SELECT id, status, error FROM etl.runs ORDER BY id")
    by_id = {row["id"]: row for row in runs}
    dead_run = by_id[abandoned[0]["id"]]
    assert dead_run["status"] == "failed" and "abandoned" in dead_run["error"]
    assert [row["status"] for row in runs] == ["failed", "success"]
    # Nothing lost: the standby's cycle built what the killed one never committed.
    affiliates = await fetch(robust_url, "SELECT affiliate_id, total_referrals FROM affiliates "
                             "WHERE affiliate_id = 1")
    assert [tuple(row) for row in affiliates] == [(1, 1)]


async def test_a_leader_that_loses_its_lock_connection_stops_scheduling_at_once(
    settings: Settings, robust_url: str, operation_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedulers: list[EtlScheduler] = []
    real_start = leader.start_scheduler

    def recording_start(*args: object, **kwargs: object) -> EtlScheduler:
        scheduler = real_start(*args, **kwargs)  # type: ignore[arg-type]
        schedulers.append(scheduler)
        return scheduler

    monkeypatch.setattr(leader, "start_scheduler", recording_start)
    said: list[tuple[float, str]] = []
    task = asyncio.create_task(leader.lead_forever(
        settings, robust_url, operation_url, announce=lambda text: said.append((time.monotonic(), text))))

    async def until(text: str, count: int = 1, seconds: float = 20) -> float:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            hits = [moment for moment, line in said if text in line]
            if len(hits) >= count:
                return hits[count - 1]
            assert not task.done(), task
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {text!r} x{count}: {said}")

    try:
        await until("leads:")
        assert schedulers[0].scheduler.running
        pids = await fetch(robust_url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                           "AND application_name = $1", leader.SESSION_SETTINGS["application_name"])
        assert len(pids) == 1
        cut = time.monotonic()
        await fetch(robust_url, "SELECT pg_terminate_backend($1)", pids[0]["pid"])
        stopped = await until("lost the leader lock") - cut
        print(f"lock connection terminated -> scheduling stopped in {stopped * 1000:.0f} ms")
        assert stopped < leader.PROBE_SECONDS + leader.PROBE_TIMEOUT_SECONDS
        assert not schedulers[0].scheduler.running
        # Then it campaigns again and, alone, leads again with a new scheduler.
        await until("leads:", count=2)
        assert len(schedulers) == 2 and schedulers[1].scheduler.running
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not schedulers[-1].scheduler.running
    # The lock went with the cancelled leader: another session takes it at once.
    conn = await asyncpg.connect(robust_url)
    try:
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", leader.LEADER_LOCK_KEY)
    finally:
        await conn.close()


@pytest.mark.parametrize("enabled", [False, True])
async def test_the_api_runs_no_scheduler_when_it_is_off(
    robust_url: str, operation_url: str, enabled: bool
) -> None:
    settings = Settings(database_url=robust_url, operation_database_url=operation_url,
                        etl_scheduler_enabled=enabled, freshness_poll_seconds=0, _env_file=None)
    app = create_app(settings, robust_url=robust_url)
    async with app.router.lifespan_context(app):
        scheduler = app.state.scheduler
        if enabled:
            assert scheduler is not None and "etl-incremental" in scheduler.jobs()
        else:
            assert scheduler is None
