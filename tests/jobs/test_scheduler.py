"""The ETL schedule: jobs, their guards, and a scheduled cycle that really runs."""

from __future__ import annotations

from etl import events
from jobs.scheduler import build_scheduler, start_scheduler
from tests.support.factories import Operation, fetch


def test_jobs_and_their_guards(settings) -> None:
    scheduler = build_scheduler(settings, "postgresql://x@localhost/r", "postgresql://x@localhost/o")
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"etl-incremental", "etl-daily", "etl-weekly", "etl-monthly", "etl-full",
                         "commission-close", "backup", "transactions-archive"}
    for job in jobs.values():
        assert job.max_instances == 1
        assert job.coalesce is True
        assert job.misfire_grace_time == settings.etl_misfire_grace_seconds
    assert jobs["etl-incremental"].trigger.interval.total_seconds() == 15 * 60
    assert str(jobs["etl-daily"].trigger.fields[5]) == "0"  # hour field of 00:30
    assert str(jobs["etl-daily"].trigger.fields[6]) == "30"
    assert jobs["etl-full"].args == (True, "full")
    assert str(jobs["etl-full"].trigger.fields[4]) == "sun"


async def test_a_scheduled_cycle_commits_and_announces(settings, robust_url, operation_url) -> None:
    op = await Operation.open(operation_url)
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.close()
    seen: list[events.EtlCommitted] = []
    unsubscribe = events.subscribe(seen.append)
    scheduler = start_scheduler(settings, robust_url, operation_url)
    try:
        job = scheduler.scheduler.get_job("etl-incremental")
        await job.func(*job.args)
        # A second job while nothing changed is a quick no-op cycle.
        await job.func(*job.args)
    finally:
        await scheduler.shutdown()
        unsubscribe()
    runs = await fetch(robust_url, "SELECT trigger, status FROM etl.runs ORDER BY id")
    assert [tuple(r) for r in runs] == [("interval", "success"), ("interval", "success")]
    assert [e.mode for e in seen] == ["incremental", "incremental"]
    assert 1 in seen[0].affiliate_ids and seen[1].affiliate_ids == frozenset()


async def test_a_failing_scheduled_cycle_is_logged_not_raised(settings, robust_url, caplog) -> None:
    scheduler = build_scheduler(settings, robust_url, "postgresql://nobody@127.0.0.1:1/none")
    job = scheduler.get_job("etl-incremental")
    await job.func(*job.args)
    assert "failed" in caplog.text
    runs = await fetch(robust_url, "SELECT status, error FROM etl.runs")
    assert runs[0][0] == "failed" and "127.0.0.1:1" in runs[0][1]
