"""Pages of open statements over every affiliate (the shared deployment: March and April 2025 are
open, April chained on March): keyset pages equal a full scan, and the keyset and the page
size reach the SQL, so a late page does not read the affiliates before it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from commissions.open_statements import stream_open_statements
from tests.support.deployment import Api, Deployment

PAGE = """query P($m: Date!, $first: Int, $after: ID) { statements(month: $m, first: $first, after: $after) {
  id affiliateId status cpaValidated cpaRejected cpa rev cpaAdjustments revAdjustments carryoverIn revPayable
  carryoverOut heldIn payable heldOut belowMinPayout } }"""
MONTHS = ["2025-03-01", "2025-04-01"]


async def statements(api: Api, month: str, **page: Any) -> list[dict[str, Any]]:
    return (await api.data(PAGE, {"m": month, **page}))["statements"]


@pytest.mark.parametrize("month", MONTHS)
async def test_pages_equal_a_full_scan(api: Api, month: str) -> None:
    full = await statements(api, month, first=100)
    assert 6 <= len(full) < 100
    ids = [int(s["affiliateId"]) for s in full]
    assert ids == sorted(set(ids))
    paged: list[dict[str, Any]] = []
    after = None
    while True:
        page = await statements(api, month, first=2, after=after)
        paged += page
        if len(page) < 2:
            break
        after = page[-1]["affiliateId"]
    assert paged == full
    # a late page, after an id that has no statement, and past the end
    assert await statements(api, month, first=2, after=full[-4]["affiliateId"]) == full[-3:-1]
    gap = next(i for i in range(ids[0], ids[-1]) if i not in ids)
    assert await statements(api, month, first=2, after=str(gap)) == [
        s for s in full if int(s["affiliateId"]) > gap][:2]
    assert await statements(api, month, first=5, after=full[-1]["affiliateId"]) == []
    assert await statements(api, month, first=0) == []  # was one statement before the fix


class CountingConnection(asyncpg.Connection):
    """Records the affiliate of every row the statement cursors stream to Python."""

    streamed: list[int]

    def cursor(self, query: str, *args: Any, **kwargs: Any) -> Any:
        factory = super().cursor(query, *args, **kwargs)
        streamed = self.streamed

        class Counted:
            def __aiter__(self) -> Any:
                async def rows() -> Any:
                    async for row in factory:
                        streamed.append(row["affiliate_id"])
                        yield row

                return rows()

        return Counted()


@pytest.fixture
async def counting(deployment: Deployment) -> Iterator[CountingConnection]:
    conn = await asyncpg.connect(deployment.robust_url, connection_class=CountingConnection)
    conn.streamed = []
    try:
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize("month", MONTHS)
async def test_a_late_page_reads_only_the_affiliates_after_it(
    deployment: Deployment, counting: CountingConnection, month: str
) -> None:
    from datetime import date

    tz, day = deployment.settings.timezone, date.fromisoformat(month)
    full = [s async for s in stream_open_statements(counting, tz, day)]
    read_by_full_scan = list(counting.streamed)
    assert len({s.affiliate_id for s in full}) == len(full) >= 6

    counting.streamed.clear()
    after = full[-4].affiliate_id
    late = [s async for s in stream_open_statements(counting, tz, day, after=after, limit=2)]
    assert late == full[-3:-1]
    # The keyset reached the SQL: no row of an affiliate at or before the bound was read.
    assert counting.streamed and min(counting.streamed) > after

    # So did the page size: an early page of one reads at most twice the rows of one affiliate
    # (one a month), not every affiliate after the bound.
    counting.streamed.clear()
    after = full[0].affiliate_id
    assert [s async for s in stream_open_statements(counting, tz, day, after=after, limit=1)] == [full[1]]
    months = 1 + (day.month - 3)
    assert len(counting.streamed) <= 2 * months < len([a for a in read_by_full_scan if a > after])

    # one affiliate's own statement, after its own id: nothing
    own = full[0].affiliate_id
    counting.streamed.clear()
    assert [s async for s in stream_open_statements(counting, tz, day, [own], after=own)] == []
    assert counting.streamed == []


@pytest.mark.parametrize("month", MONTHS)
async def test_every_open_statement_has_a_line_or_a_carry(api: Api, month: str) -> None:
    """What closing would store: no statement made of zeros for an affiliate whose money was
    all in an earlier open month."""
    query = """query P($m: Date!) { statements(month: $m, first: 100) { id cpaValidated rev heldIn carryoverIn
      adjustments lines { amount } } }"""
    for s in (await api.data(query, {"m": month}))["statements"]:
        assert s["lines"] or s["heldIn"] != "0.00" or s["carryoverIn"] != "0.00", s
