"""Retention of the financial transactions (etl/archive.py): the archive job, its files, the
restore, the ETL around archived months, the API's ARCHIVED answer, and a real kill of the job
after each of its steps.

The data: one affiliate (501) whose network has activity from January to June 2025; "now" is
2025-07-15 and three months stay online (May, June, July), so January to April are archived.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from db.settings import Settings
from etl import archive
from etl.archive import ArchiveError, partition_name, restore_month, run_archive
from etl.archive_files import read_sums
from jobs.scheduler import build_scheduler
from tests.support.deployment import JWT_SECRET, PLAIN, Deployment, serve
from tests.support.factories import Operation, etl, fetch

ROOT = Path(__file__).resolve().parents[2]
NOW = "2025-07-15T12:00:00-03:00"
ARCHIVED = [date(2025, m, 1) for m in (1, 2, 3, 4)]
ONLINE = [date(2025, m, 1) for m in (5, 6)]
ZONE = "America/Sao_Paulo"

# Per local month: rows and a checksum of every column of every row, in id order.
MONTH_ROWS = f"""
SELECT date_trunc('month', transaction_date AT TIME ZONE '{ZONE}')::date AS month, count(*) AS n,
       md5(string_agg(concat_ws('|', id, affiliate_id, user_id, mlm_level, transaction_type,
                                amount, extract(epoch FROM transaction_date), source_id),
                      ',' ORDER BY id)) AS checksum,
       md5(string_agg(concat_ws('|', affiliate_id, user_id, mlm_level, transaction_type, amount,
                                extract(epoch FROM transaction_date), source_id),
                      ',' ORDER BY affiliate_id, user_id, mlm_level, transaction_type,
                               transaction_date, source_id, amount)) AS content
FROM {{table}} GROUP BY 1 ORDER BY 1
"""

AGGREGATES = ("affiliate_periodic_summaries", "affiliate_mlm_structure", "affiliates",
              "affiliate_referrals", "affiliate_cpa_validations")


async def write_months(op: Operation) -> None:
    """Twelve users of affiliate 501 (the last six under 502), two a month, January to June."""
    await op.user(501, "Afiliada", afiliado=True, at="2024-12-01 00:00Z")
    for i, user in enumerate(range(502, 514)):
        month, day = 1 + i // 2, 10 + i
        at = f"2025-{month:02d}-{day:02d}"
        await op.user(user, at=f"{at} 08:00Z")
        await op.track(user, 501 if user < 508 else 502, f"{at} 09:00Z")
        await op.deposit(user, f"{40 + i}.00", f"{at} 10:00Z")
        await op.bet(user, "60.00", f"{i * 5}.00", f"{at} 11:00Z")
        await op.bet(user, "30.00", "0.00", f"2025-{month:02d}-{day + 1:02d} 12:00Z")
        if i % 3 == 0:
            await op.withdrawal(user, "15.00", f"2025-{month:02d}-{day + 2:02d} 14:00Z")


@pytest.fixture
async def built(settings: Settings, robust_url: str, operation_url: str, tmp_path: Path,
                clock: Callable[[str], None]) -> AsyncIterator[Settings]:
    clock(NOW)
    op = await Operation.open(operation_url)
    try:
        await write_months(op)
    finally:
        await op.close()
    retained = settings.model_copy(update={
        "transactions_retention_months": 3, "archive_dir": tmp_path / "archive",
        "jwt_secret": SecretStr(JWT_SECRET), **PLAIN})
    await etl(retained, robust_url, operation_url)
    yield retained


async def month_rows(url: str, table: str = "affiliate_financial_transactions") -> dict[date, Any]:
    return {r["month"]: r for r in await fetch(url, MONTH_ROWS.format(table=table))}


async def aggregates(url: str) -> dict[str, str]:
    """A checksum of each aggregate table (without ``updated_at``: when a row was last written)."""
    row = "(to_jsonb(t) - 'updated_at')::text"
    return {t: (await fetch(url, f"SELECT md5(string_agg({row}, ',' ORDER BY {row})) FROM {t} t"))[0][0]
            for t in AGGREGATES}


async def file_rows(url: str, path: Path) -> dict[date, Any]:
    """The archive file's rows, loaded into a scratch table, by month and checksum."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TEMP TABLE scratch (LIKE affiliate_financial_transactions)")
        with gzip.open(path, "rb") as data:
            await conn.copy_to_table("scratch", source=data, format="csv", header=True)
        return {r["month"]: r for r in await conn.fetch(MONTH_ROWS.format(table="scratch"))}
    finally:
        await conn.close()


async def states(url: str) -> dict[date, str]:
    return {r[0]: r[1] for r in await fetch(url, "SELECT month, state FROM etl.archived_months")}


async def exists(url: str, table: str) -> bool:
    return (await fetch(url, "SELECT to_regclass($1) IS NOT NULL", table))[0][0]


# ---------------------------------------------------------------------------- the job


async def test_archive_job_end_to_end(built: Settings, robust_url: str) -> None:
    before, sums_before = await month_rows(robust_url), await aggregates(robust_url)
    assert set(ARCHIVED + ONLINE) <= set(before)
    sums_by_type: dict[date, dict[str, Any]] = {}
    for r in await fetch(robust_url, f"""
            SELECT date_trunc('month', transaction_date AT TIME ZONE '{ZONE}')::date AS month,
                   transaction_type, count(*) AS n, sum(amount) AS amount
            FROM affiliate_financial_transactions GROUP BY 1, 2"""):
        sums_by_type.setdefault(r["month"], {})[r["transaction_type"]] = {
            "rows": r["n"], "amount": str(r["amount"])}
    assert {"deposit", "bet", "rev"} <= set(sums_by_type[date(2025, 1, 1)])

    result = await run_archive(built, robust_url)

    assert result.months == ARCHIVED
    assert await states(robust_url) == dict.fromkeys(ARCHIVED, "archived")
    after = await month_rows(robust_url)
    assert set(after) == set(ONLINE) and all(after[m] == before[m] for m in ONLINE)
    assert await aggregates(robust_url) == sums_before  # aggregates are never archived
    for month in ARCHIVED:
        assert not await exists(robust_url, partition_name(month))
        path = built.archive_dir / f"affiliate_financial_transactions-{month:%Y-%m}.csv.gz"  # type: ignore[operator]
        manifest = json.loads(path.with_name(path.name.replace(".csv.gz", ".manifest.json")).read_text())
        assert manifest["rows"] == before[month]["n"]
        assert read_sums(path) == (manifest["rows"], manifest["sums"])
        assert (await file_rows(robust_url, path))[month]["checksum"] == before[month]["checksum"]
        assert manifest["sums"] == sums_by_type[month]  # per type, exact decimals
    runs = await fetch(robust_url, "SELECT kind, status, months FROM etl.archive_runs")
    assert [(r["kind"], r["status"], r["months"]) for r in runs] == [("archive", "success", ARCHIVED)]

    # A second run has nothing to do.
    assert (await run_archive(built, robust_url)).months == []


async def test_the_api_answers_archived_naming_the_months(built: Settings, robust_url: str,
                                                         operation_url: str) -> None:
    await run_archive(built, robust_url)
    deployment = Deployment(robust_url, operation_url, built)
    query = """query($from: DateTime, $to: DateTime) { affiliate(id: "501") {
        transactions(from: $from, to: $to, first: 100) { totalCount nodes { transactionDate } } } }"""
    async with serve(deployment) as api:
        error = await api.error(query, {"from": "2025-02-15T00:00:00", "to": "2025-06-01T00:00:00"})
        assert error["extensions"]["code"] == "ARCHIVED"
        assert error["extensions"]["months"] == ["2025-02", "2025-03", "2025-04"]
        assert "fature archive restore" in error["message"]
        # A range inside the online months answers; no `from`: what is online.
        data = await api.data(query, {"from": "2025-05-01T00:00:00"})
        online = data["affiliate"]["transactions"]
        assert online["totalCount"] > 0
        everything = (await api.data(query, {}))["affiliate"]["transactions"]
        assert everything["totalCount"] == online["totalCount"]
        # The bound is the local month: the instant before May's first local midnight is April.
        error = await api.error(query, {"from": "2025-04-30T23:59:59-03:00"})
        assert error["extensions"]["months"] == ["2025-04"]


# ---------------------------------------------------------------------------- restore


async def test_restore_round_trip(built: Settings, robust_url: str) -> None:
    before = await month_rows(robust_url)
    await run_archive(built, robust_url)

    rows = await restore_month(built, robust_url, date(2025, 2, 1))

    assert rows == before[date(2025, 2, 1)]["n"]
    after = await month_rows(robust_url)
    assert after[date(2025, 2, 1)]["checksum"] == before[date(2025, 2, 1)]["checksum"]  # identical
    assert (await states(robust_url))[date(2025, 2, 1)] == "restored"
    # Kept online by the next runs, until `fature archive drop`.
    assert (await run_archive(built, robust_url)).months == []
    with pytest.raises(ArchiveError, match="online already"):
        await restore_month(built, robust_url, date(2025, 2, 1))
    with pytest.raises(ArchiveError, match="never archived"):
        await restore_month(built, robust_url, date(2025, 6, 1))
    assert (await run_archive(built, robust_url, drop=date(2025, 2, 1))).months == [date(2025, 2, 1)]
    assert not await exists(robust_url, partition_name(date(2025, 2, 1)))
    assert (await states(robust_url))[date(2025, 2, 1)] == "archived"


async def test_restore_refuses_a_file_that_does_not_match(built: Settings, robust_url: str) -> None:
    await run_archive(built, robust_url)
    path = built.archive_dir / "affiliate_financial_transactions-2025-03.csv.gz"  # type: ignore[operator]
    data = gzip.decompress(path.read_bytes()).replace(b"deposit", b"withdrawal", 1)
    path.write_bytes(gzip.compress(data))
    with pytest.raises(ArchiveError, match="sha256"):
        await restore_month(built, robust_url, date(2025, 3, 1))
    assert not await exists(robust_url, partition_name(date(2025, 3, 1)))


# ---------------------------------------------------------------------------- the ETL


async def test_etl_after_archiving(built: Settings, robust_url: str, operation_url: str) -> None:
    await run_archive(built, robust_url)
    path = built.archive_dir / "affiliate_financial_transactions-2025-02.csv.gz"  # type: ignore[operator]
    archived_bytes = path.read_bytes()
    online = await month_rows(robust_url)
    february = ("SELECT total_deposits FROM affiliate_periodic_summaries WHERE affiliate_id = 501 "
                "AND period_type = 'monthly' AND period_start = '2025-02-01'")
    deposits = (await fetch(robust_url, february))[0][0]

    # A late source row dated in an archived month: the aggregates change, nothing else.
    op = await Operation.open(operation_url)
    try:
        await op.deposit(504, "1000.00", "2025-02-20 10:00Z", updated="2025-07-15 14:00Z")
        await op.deposit(512, "7.00", "2025-06-20 10:00Z", updated="2025-07-15 14:00Z")
    finally:
        await op.close()
    await etl(built, robust_url, operation_url)

    assert (await fetch(robust_url, february))[0][0] == deposits + 1000
    assert not await exists(robust_url, partition_name(date(2025, 2, 1)))
    assert path.read_bytes() == archived_bytes
    after = await month_rows(robust_url)
    assert set(after) == set(ONLINE)
    assert after[date(2025, 6, 1)]["n"] > online[date(2025, 6, 1)]["n"]  # online months follow

    # --full rebuilds online months only (new ids, same content) and leaves the archive alone.
    before_full = await month_rows(robust_url)
    await etl(built, robust_url, operation_url, full=True)
    rebuilt = await month_rows(robust_url)
    assert set(rebuilt) == set(ONLINE)
    assert all(rebuilt[m]["content"] == before_full[m]["content"] for m in ONLINE)
    assert (await fetch(robust_url, february))[0][0] == deposits + 1000
    assert [m for m in ARCHIVED if await exists(robust_url, partition_name(m))] == []
    assert path.read_bytes() == archived_bytes


async def test_a_half_done_concurrent_detach_is_finished(built: Settings, robust_url: str,
                                                        operation_url: str) -> None:
    before = await month_rows(robust_url)
    name = partition_name(date(2025, 1, 1))
    reader = await asyncpg.connect(robust_url)
    detacher = await asyncpg.connect(robust_url)
    try:
        # A reader's open transaction makes DETACH ... CONCURRENTLY wait; cancelled then, the
        # partition is left "detach pending", as after a crash in the middle of the detach.
        await detacher.execute("INSERT INTO etl.archived_months (month, state) VALUES ('2025-01-01', 'detaching')")
        reader_tx = reader.transaction(isolation="repeatable_read")
        await reader_tx.start()
        await reader.fetchval("SELECT count(*) FROM affiliate_financial_transactions")
        await detacher.execute("SET statement_timeout = '1s'")
        with pytest.raises(asyncpg.QueryCanceledError):
            await detacher.execute(f"ALTER TABLE affiliate_financial_transactions DETACH PARTITION {name} CONCURRENTLY")
        await reader_tx.rollback()
        pending = await reader.fetchval(
            "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = $1::regclass", name)
        assert pending is True
    finally:
        await reader.close()
        await detacher.close()

    # The ETL runs beside it (creates nothing, writes nothing there), a full recompute too; the
    # next job finishes it.
    await etl(built, robust_url, operation_url)
    await etl(built, robust_url, operation_url, full=True)
    await run_archive(built, robust_url)
    assert await states(robust_url) == dict.fromkeys(ARCHIVED, "archived")
    path = built.archive_dir / "affiliate_financial_transactions-2025-01.csv.gz"  # type: ignore[operator]
    assert (await file_rows(robust_url, path))[date(2025, 1, 1)]["checksum"] == before[date(2025, 1, 1)]["checksum"]


# ---------------------------------------------------------------------------- the kill test


async def fature(settings: Settings, robust_url: str, operation_url: str, *args: str,
                 **env: str) -> subprocess.CompletedProcess[str]:
    """``fature <args>`` in its own process (a real one: the kill hook ends it with os._exit)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_")}
    environment.update({
        "FATURE_DATABASE_URL": robust_url, "FATURE_OPERATION_DATABASE_URL": operation_url,
        "FATURE_NOW": NOW, "FATURE_TRANSACTIONS_RETENTION_MONTHS": "3",
        "FATURE_ARCHIVE_DIR": str(settings.archive_dir), "COLUMNS": "250", **env})
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cli", *args], cwd=ROOT, env=environment,
        capture_output=True, text=True, timeout=120)


async def everything_kept(url: str, settings: Settings, before: dict[date, Any], *,
                          renumbered: bool = False) -> None:
    """Every row of before is exactly once in the online table, a detached table left over, or
    the verified file of an archived month; a partition is gone only once its file is."""
    found: dict[date, Any] = dict(await month_rows(url))
    month_states = await states(url)
    for month in ARCHIVED:
        state = month_states.get(month)
        table = partition_name(month)
        if state == "archived":
            assert not await exists(url, table)
            path = settings.archive_dir / f"affiliate_financial_transactions-{month:%Y-%m}.csv.gz"  # type: ignore[operator]
            found[month] = (await file_rows(url, path))[month]
        elif month not in found:  # detached, not yet dropped
            assert await exists(url, table), (month, state)
            found[month] = (await month_rows(url, table))[month]
    # After a full recompute, online rows have new ids: compare their content.
    column = "content" if renumbered else "checksum"
    assert {m: r[column] for m, r in found.items()} == {m: r[column] for m, r in before.items()}


@pytest.mark.slow
@pytest.mark.parametrize("step", archive.STEPS)
async def test_killed_after_each_step_the_next_run_finishes(
        built: Settings, robust_url: str, operation_url: str, step: str) -> None:
    before, sums_before = await month_rows(robust_url), await aggregates(robust_url)

    killed = await fature(built, robust_url, operation_url, "archive", "run",
                          FATURE_ARCHIVE_FAIL_AFTER=step)

    assert killed.returncode == 99, killed.stderr
    assert (await states(robust_url))[ARCHIVED[0]] == {
        "mark": "detaching", "detach": "detached", "write": "written", "verify": "verified",
        "drop": "archived"}[step]
    await everything_kept(robust_url, built, before)
    # The ETL runs between (its lock is free again), a full recompute too: neither touches the
    # month in progress.
    await etl(built, robust_url, operation_url)
    await everything_kept(robust_url, built, before)
    await etl(built, robust_url, operation_url, full=True)
    await everything_kept(robust_url, built, before, renumbered=True)

    finished = await fature(built, robust_url, operation_url, "archive", "run")

    assert finished.returncode == 0, finished.stderr
    assert await states(robust_url) == dict.fromkeys(ARCHIVED, "archived")
    await everything_kept(robust_url, built, before, renumbered=True)
    assert await aggregates(robust_url) == sums_before
    runs = await fetch(robust_url, "SELECT status, error FROM etl.archive_runs ORDER BY id")
    assert [r["status"] for r in runs] == ["failed", "success"]
    assert "abandoned" in runs[0]["error"]


# ---------------------------------------------------------------------------- around it


async def test_busy_while_an_etl_cycle_holds_the_lock(built: Settings, robust_url: str) -> None:
    from etl.sync import ETL_LOCK_KEY, EtlBusy

    holder = await asyncpg.connect(robust_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", ETL_LOCK_KEY)
        with pytest.raises(EtlBusy):
            await run_archive(built, robust_url)
    finally:
        await holder.close()
    assert await states(robust_url) == {}
    assert [r[0] for r in await fetch(robust_url, "SELECT status FROM etl.archive_runs")] == ["skipped"]


async def test_status_metrics_and_cli(built: Settings, robust_url: str, operation_url: str) -> None:
    assert "no successful run yet" in await archive.status_line(built, robust_url)
    await run_archive(built, robust_url)
    line = await archive.status_line(built, robust_url)
    assert "months archived: 2025-01..2025-04 (4)" in line and "online from 2025-05" in line
    async with serve(Deployment(robust_url, operation_url, built)) as api:
        metrics = (await api.client.get("/metrics")).text
    gauge = next(line for line in metrics.splitlines() if line.startswith("fature_archive_last_success_timestamp_seconds"))
    assert float(gauge.split()[-1]) > 0
    listed = await fature(built, robust_url, operation_url, "archive", "list")
    assert listed.returncode == 0, listed.stderr
    assert all(f"{m:%Y-%m}" in listed.stdout for m in ARCHIVED) and "archived" in listed.stdout
    status = await fature(built, robust_url, operation_url, "etl", "status")
    assert status.returncode == 0, status.stderr
    assert "transactions archive: last successful run" in status.stdout
    restored = await fature(built, robust_url, operation_url, "archive", "restore", "2025-03")
    assert restored.returncode == 0 and "2025-03 restored" in restored.stdout, restored.stderr
    again = await fature(built, robust_url, operation_url, "archive", "restore", "2025-03")
    assert again.returncode == 1 and "online already" in again.stderr
    bad = await fature(built, robust_url, operation_url, "archive", "restore", "March")
    assert bad.returncode == 1 and "YYYY-MM" in bad.stderr and "Traceback" not in bad.stderr


def test_the_scheduler_runs_the_archive_job(settings: Settings) -> None:
    scheduler = build_scheduler(settings.model_copy(update={"archive_at": "04:45"}), "postgresql://x/y",
                                "postgresql://x/z")
    job = scheduler.get_job("transactions-archive")
    assert job is not None
    assert str(job.trigger.fields[5]) == "4" and str(job.trigger.fields[6]) == "45"  # hour, minute
