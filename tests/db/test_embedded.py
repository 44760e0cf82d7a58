"""The embedded PostgreSQL: start, reuse, stop and recover, against the real wheel."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import psutil  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from db.embedded import DatabaseUrls, EmbeddedPostgresError, database_urls, stop_server
from db.settings import Settings, async_url

REPO = Path(__file__).resolve().parents[2]

OWNER_SCRIPT = """
import sys, time
from pathlib import Path
from db.embedded import database_urls
from db.settings import Settings
with database_urls(Settings(data_dir=Path(sys.argv[1]), database_url=None)):
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(data_dir=tmp_path / "pg", database_url=None, operation_database_url=None)
    yield settings
    stop_server(settings.data_dir)  # never leave a server behind a failed test


def postmaster_pid(settings: Settings) -> int:
    return int((settings.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])


def is_gone(pid: int) -> bool:
    """Dead, or a zombie nobody reaped (PID 1 here does not reap)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_until_gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not is_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def fetch(url: str, sql: str) -> object:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def test_serves_both_databases_and_stops_on_exit(settings: Settings) -> None:
    with database_urls(settings) as urls:
        pid = postmaster_pid(settings)
        assert urls.embedded
        assert urls.robust.startswith("postgresql://")
        assert urls.operation is not None
        assert await fetch(urls.robust, "select current_database()") == "fature"
        assert await fetch(urls.operation, "select current_database()") == "fature_operation"
        engine = create_async_engine(async_url(urls.robust))
        async with engine.connect() as connection:
            assert (await connection.execute(text("select 1"))).scalar_one() == 1
        await engine.dispose()

    assert wait_until_gone(pid)
    assert not (settings.data_dir / "pgdata" / "postmaster.pid").exists()
    with pytest.raises(OSError):
        await fetch(urls.robust, "select 1")


async def test_second_start_reuses_the_data(settings: Settings) -> None:
    with database_urls(settings) as urls:
        await execute(urls.robust, "create table marker (id int)")

    began = time.monotonic()
    with database_urls(settings) as again:
        restart_seconds = time.monotonic() - began
        assert again == urls
        assert await fetch(again.robust, "select to_regclass('marker')::text") == "marker"
    assert restart_seconds < 5


async def test_nested_use_keeps_the_outer_server(settings: Settings) -> None:
    with database_urls(settings) as outer:
        pid = postmaster_pid(settings)
        with database_urls(settings) as inner:
            assert inner == outer
        assert postmaster_pid(settings) == pid
        assert await fetch(outer.robust, "select 1") == 1
    assert wait_until_gone(pid)


async def test_recovers_after_the_postmaster_is_killed(settings: Settings) -> None:
    with database_urls(settings) as urls:
        await execute(urls.robust, "create table survivor (id int)")
        pid = postmaster_pid(settings)
        os.kill(pid, signal.SIGKILL)
        assert wait_until_gone(pid)
    # Leaving the context after the crash neither hangs nor raises; the stale
    # postmaster.pid is recovered on the next start.
    assert (settings.data_dir / "pgdata" / "postmaster.pid").exists()

    with database_urls(settings) as urls:
        assert postmaster_pid(settings) != pid
        assert await fetch(urls.robust, "select to_regclass('survivor')::text") == "survivor"


async def test_recovers_a_postmaster_pid_naming_another_live_process(settings: Settings) -> None:
    with database_urls(settings):
        pid_file = settings.data_dir / "pgdata" / "postmaster.pid"
        contents = pid_file.read_text()
    # As if the dead postmaster's pid had been reused by an unrelated process: this one.
    pid_file.write_text(contents.replace(contents.split()[0], str(os.getpid()), 1))

    with database_urls(settings) as urls:
        assert await fetch(urls.robust, "select 1") == 1


async def test_reuses_a_server_whose_owner_was_killed_and_leaves_it_running(
    settings: Settings,
) -> None:
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER_SCRIPT, str(settings.data_dir),
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        assert await asyncio.wait_for(owner.stdout.readline(), timeout=20) == b"ready\n"
    finally:
        owner.kill()
        await owner.wait()
    pid = postmaster_pid(settings)

    with database_urls(settings) as urls:
        assert postmaster_pid(settings) == pid
        assert await fetch(urls.robust, "select 1") == 1
    assert not is_gone(pid)
    assert await fetch(urls.robust, "select 1") == 1

    assert stop_server(settings.data_dir)
    assert wait_until_gone(pid)  # the stop returns once the server is down; its exit may lag under load


async def test_moves_to_a_free_port_when_the_remembered_one_is_taken(settings: Settings) -> None:
    with database_urls(settings) as urls:
        remembered = urlsplit(urls.robust).port
    assert remembered is not None

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        # The stopped server's port can linger a moment (TIME_WAIT, a postmaster still exiting).
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):
            try:
                squatter.bind(("127.0.0.1", remembered))
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail(f"port {remembered} never became free after the server stopped")
        squatter.listen()
        with database_urls(settings) as moved:
            assert urlsplit(moved.robust).port != remembered
            assert await fetch(moved.robust, "select 1") == 1


def test_a_configured_url_starts_nothing(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    settings = Settings(data_dir=tmp_path / "pg", database_url=url, operation_database_url=None)

    with database_urls(settings) as urls:
        assert urls == DatabaseUrls(robust=url, operation=None, embedded=False)
    assert not settings.data_dir.exists()


def test_a_failure_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    settings = Settings(data_dir=tmp_path / "file" / "pg", database_url=None)

    with pytest.raises(EmbeddedPostgresError) as failure:
        with database_urls(settings):
            pass
    assert "\n" not in str(failure.value)
    assert str(settings.data_dir) in str(failure.value)
