"""One answer, one snapshot (db/snapshot.py): an ETL commit landing while a dashboard is being
answered leaves that answer entirely before it, ``asOf`` included; the next answer is entirely
after it. The commit is simulated (totals, network, daily summaries and an ``etl.runs`` row in
one transaction, as a cycle commits them) and lands right after the answer's first statement
(a query listener runs it synchronously, so the answer's other statements run after it)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.deployment import Api, Deployment, build_deployment, drop_deployment, rows, serve
from tests.support.replica import pg_bin_dir
from web.graphiql import DASHBOARD_QUERY

COMMIT = """
BEGIN;
UPDATE affiliates SET total_ggr = total_ggr + 1000 WHERE affiliate_id = 300;
UPDATE affiliate_mlm_structure SET level_1_ggr = level_1_ggr + 1000 WHERE affiliate_id = 300;
UPDATE affiliate_periodic_summaries SET total_ggr = total_ggr + 1000
 WHERE affiliate_id = 300 AND period_type = 'daily';
INSERT INTO etl.runs (mode, status, finished_at, source_as_of)
 VALUES ('incremental', 'success', clock_timestamp(), clock_timestamp() + interval '1 hour');
COMMIT;
"""


@pytest.fixture
async def own(robust_template: str) -> AsyncIterator[Deployment]:
    built = await build_deployment(robust_template)
    yield built
    await drop_deployment(built)


def commit_now(url: str) -> None:
    """The simulated ETL commit, synchronously (from inside the event loop, between statements)."""
    subprocess.run([str(pg_bin_dir() / "psql"), url, "-v", "ON_ERROR_STOP=1", "-q", "-c", COMMIT],
                   check=True, capture_output=True, timeout=30)


async def dashboard(api: Api) -> dict[str, Any]:
    return await api.graphql(DASHBOARD_QUERY, {"id": "300"})


async def test_a_commit_during_an_answer_is_entirely_after_it(own: Deployment) -> None:
    async with serve(own, compiled_execution=False) as api:  # the general path: five statements
        before = await dashboard(api)
        assert "errors" not in before, before
        seen: list[str] = []

        def first_statement_then_commit(statement: str) -> None:
            seen.append(statement)
            if len(seen) == 1:
                commit_now(own.robust_url)

        api.app.state.api.database.query_listeners.append(first_statement_then_commit)
        during = await dashboard(api)
        api.app.state.api.database.query_listeners.remove(first_statement_then_commit)
        after = await dashboard(api)

    assert len(seen) == 5, seen  # the commit landed with four statements still to run
    # Entirely before: every figure and the as-of instant of the answer before the commit.
    assert during == before
    last = await rows(own.robust_url, "SELECT source_as_of FROM etl.runs ORDER BY id DESC LIMIT 1")
    ggr = lambda body: body["data"]["affiliate"]["totalGgr"]  # noqa: E731
    assert float(ggr(after)) == float(ggr(before)) + 1000
    level_1 = lambda body: body["data"]["affiliate"]["network"]["levels"][0]["ggr"]  # noqa: E731
    assert float(level_1(after)) == float(level_1(before)) + 1000
    assert after["extensions"]["asOf"] == last[0]["source_as_of"].isoformat()
    assert during["extensions"]["asOf"] == before["extensions"]["asOf"] != after["extensions"]["asOf"]
    assert after["data"]["syncStatus"]["dataAsOf"] != before["data"]["syncStatus"]["dataAsOf"]


async def test_a_compiled_answer_is_the_run_its_one_statement_read(own: Deployment) -> None:
    """The compiled dashboard is one statement: a commit landing just before it runs (the
    process has not heard of it) is entirely in the answer, asOf and syncStatus included."""
    async with serve(own) as api:
        before = await dashboard(api)
        before = await dashboard(api)  # the second is compiled (the first validated the document)
        seen: list[str] = []

        def commit_then_statement(statement: str) -> None:
            seen.append(statement)
            commit_now(own.robust_url)

        api.app.state.api.database.query_listeners.append(commit_then_statement)
        during = await dashboard(api)
        api.app.state.api.database.query_listeners.remove(commit_then_statement)
        after = await dashboard(api)

    assert len(seen) == 1 and seen[0].startswith("SELECT r.id AS run_id"), seen
    last = await rows(own.robust_url, "SELECT source_as_of FROM etl.runs ORDER BY id DESC LIMIT 1")
    assert during["extensions"]["asOf"] == last[0]["source_as_of"].isoformat() != before["extensions"]["asOf"]
    assert during["data"]["syncStatus"]["dataAsOf"] == during["extensions"]["asOf"]
    assert float(during["data"]["affiliate"]["totalGgr"]) == float(before["data"]["affiliate"]["totalGgr"]) + 1000
    assert during == after


async def test_as_of_is_the_run_the_answer_read_even_before_the_process_heard_of_it(own: Deployment) -> None:
    """The process's generation still names the old run (no poll, no NOTIFY heard yet): an
    answer computed now reads the new run and says so, and the cache does not keep it under the
    old generation (nor hand it out for that generation); an answer cached before stays the old
    one, with its old asOf."""
    async with serve(own, cache_enabled=True) as api:
        state = api.app.state.api
        cached_before = await dashboard(api)
        await state.freshness.stop()  # hears of no commit from now on
        old = state.freshness.snapshot
        commit_now(own.robust_url)
        assert await dashboard(api) == cached_before  # a hit: the old generation's answer, its asOf
        hits = state.metrics.cache_hits._value.get()
        other = await api.graphql(DASHBOARD_QUERY, {"id": "301"})  # not cached: computed now
        assert state.freshness.snapshot == old
        last = await rows(own.robust_url, "SELECT id, source_as_of FROM etl.runs ORDER BY id DESC LIMIT 1")
        assert other["extensions"]["asOf"] == last[0]["source_as_of"].isoformat() != old.as_of_text
        assert other["data"]["syncStatus"]["dataAsOf"] is not None
        again = await api.graphql(DASHBOARD_QUERY, {"id": "301"})
        assert again == other
        assert state.metrics.cache_hits._value.get() == hits  # computed again: never stored under `old`
