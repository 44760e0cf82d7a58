"""Revision 0009 on statements closed before it: their REV corrections were settled by the old
rules, and the rows it writes make the next correction start from what was really paid."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal as D

import asyncpg
import pytest

from commissions import service
from db import migrate
from tests.support.databases import admin, db_url

TZ = "America/Sao_Paulo"

# Closed under the old rules (March and April 2025). 901 (carryover off): March REV -200 paid
# 0; April corrected March by +300, paid max(0, 100) - max(0, -200) = 100 for it, and its own
# -500 paid nothing. 902 (on): March +65 paid 65; April's own -300 took March's +100 correction
# into its balance: -200, paid 0, carried -200.
LEGACY = """
INSERT INTO commission_months (month, closed_by) VALUES ('2025-03-01', 'test'), ('2025-04-01', 'test');
INSERT INTO commission_statements (affiliate_id, month, status, plan_id, plan_version_id, negative_carryover,
    min_payout, cpa_validated, cpa_rejected, cpa, rev, cpa_adjustments, rev_adjustments, carryover_in,
    rev_payable, carryover_out, held_in, payable, held_out) VALUES
 (901, '2025-03-01', 'on_hold', 1, 1, false, 0, 0, 0, 0, -200, 0, 0, 0, 0, 0, 0, 0, 0),
 (901, '2025-04-01', 'closed', 1, 1, false, 0, 0, 0, 0, -500, 0, 300, 0, 100, 0, 0, 100, 0),
 (902, '2025-03-01', 'paid', 1, 1, true, 0, 0, 0, 0, 65, 0, 0, 0, 65, 0, 0, 65, 0),
 (902, '2025-04-01', 'on_hold', 1, 1, true, 0, 0, 0, 0, -300, 0, 100, 0, 0, -200, 0, 0, 0);
INSERT INTO commission_statement_lines (statement_id, affiliate_id, month, for_month, family, kind, level, day,
    amount, description)
SELECT s.id, s.affiliate_id, s.month, x.for_month::date, 'rev', x.kind, 1, x.day::date, x.amount, 'legacy'
FROM (VALUES (901, '2025-03-01', '2025-03-01', 'rev', '2025-03-10', -200),
             (901, '2025-04-01', '2025-04-01', 'rev', '2025-04-05', -500),
             (901, '2025-04-01', '2025-03-01', 'rev_adjustment', '2025-03-10', 300),
             (902, '2025-03-01', '2025-03-01', 'rev', '2025-03-10', 65),
             (902, '2025-04-01', '2025-04-01', 'rev', '2025-04-05', -300),
             (902, '2025-04-01', '2025-03-01', 'rev_adjustment', '2025-03-10', 100))
     AS x (affiliate_id, month, for_month, kind, day, amount)
JOIN commission_statements s ON s.affiliate_id = x.affiliate_id AND s.month = x.month::date;
"""

# The robust tables as they stand after those corrections, then one more correction of March
# each: 901 +10 (March now 110), 902 +50 (March now 215).
LIVE = """
INSERT INTO etl.affiliate_level_periods (affiliate_id, period_type, period_start, level, new_referrals,
    deposits, deposit_count, withdrawals, withdrawal_count, stake, win, bet_count, cpa, validations, rev)
SELECT a, 'daily', d::date, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, r
FROM (VALUES (901, '2025-03-10', 110), (901, '2025-04-05', -500),
             (902, '2025-03-10', 215), (902, '2025-04-05', -300)) AS x (a, d, r);
"""


@pytest.fixture
def at_0008() -> Iterator[str]:
    name = f"fature_m_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        url = db_url(name)
        migrate.upgrade(url, "0008")
        yield url
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def run(url: str, sql: str) -> list[asyncpg.Record]:
    """Rows of one statement; a script of several (no rows) when ``sql`` ends with a semicolon."""
    conn = await asyncpg.connect(url)
    try:
        if sql.rstrip().endswith(";"):
            await conn.execute(sql)
            return []
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def may(url: str, affiliate_id: int) -> tuple[service.StatementRecord | None, list[str]]:
    conn = await asyncpg.connect(url)
    try:
        found = await service.statement(conn, TZ, affiliate_id, date(2025, 5, 1))
        lines = await service.statement_lines(conn, TZ, affiliate_id, date(2025, 5, 1), is_open=True)
        return found, [line["description"] for line in lines if line["kind"] == "rev_settlement"]
    finally:
        await conn.close()


def test_statements_closed_before_0009_are_the_start_of_the_next_correction(at_0008: str) -> None:
    asyncio.run(run(at_0008, LEGACY))
    migrate.upgrade(at_0008)
    stored = asyncio.run(run(at_0008, """
        SELECT affiliate_id, to_char(month, 'YYYY-MM') AS month, to_char(for_month, 'YYYY-MM') AS for_month,
               negative_carryover, carryover_in, rev, rev_paid, carryover_out, previous_rev, previously_paid,
               amount
        FROM commission_rev_settlements ORDER BY affiliate_id, month, for_month"""))
    assert [tuple(r) for r in stored] == [
        # 901: what April paid for March (off): March's REV -200 -> 100, paid 0 -> 100
        (901, "2025-04", "2025-03", False, 0, D("100.00"), D("100.00"), 0, D("-200.00"), 0, D("100.00")),
        # 902: April's own balance took in March's +100 (on): its REV counts as -200
        (902, "2025-04", "2025-04", True, 0, D("-200.00"), 0, D("-200.00"), D("-200.00"), 0, 0),
    ]
    assert [tuple(r) for r in asyncio.run(run(
        at_0008, "SELECT affiliate_id, to_char(month, 'YYYY-MM'), rev_settlements FROM commission_statements "
                 "ORDER BY affiliate_id, month"))] == [
        (901, "2025-03", 0), (901, "2025-04", D("100.00")), (902, "2025-03", 0), (902, "2025-04", 0)]
    with pytest.raises(asyncpg.RaiseError, match="frozen"):
        asyncio.run(run(at_0008, "UPDATE commission_statements SET rev_settlements = 1"))
    with pytest.raises(asyncpg.RaiseError, match="frozen"):
        asyncio.run(run(at_0008, "DELETE FROM commission_rev_settlements"))

    asyncio.run(run(at_0008, LIVE))
    # 901: March stands at 100 paid 100 (not -200 paid 0): +10 pays 10
    found, texts = asyncio.run(may(at_0008, 901))
    assert found is not None and (found.rev_adjustments, found.rev_settlements, found.payable) == (
        D("10.00"), D("10.00"), D("10.00"))
    assert texts == ["2025-03 settled again: REV balance 100.00 -> 110.00 (carried in 0.00, REV 110.00), "
                     "negative carryover off: paid 100.00, now 110.00, pays 10.00; carries 0.00 (was 0.00)"]
    # 902: March (65, paid 65) + 50 pays 50; April keeps the +100 it took in: it still carries
    # -200, unchanged (no line), and May carries that in
    found, texts = asyncio.run(may(at_0008, 902))
    assert found is not None and (found.rev_settlements, found.carryover_in, found.payable) == (
        D("50.00"), D("-200.00"), D("50.00"))
    assert len(texts) == 1 and texts[0].startswith("2025-03 settled again: REV balance 65.00 -> 115.00")


def test_0009_downgrades_to_what_0008_had(at_0008: str) -> None:
    def functions() -> list[tuple[str, str]]:
        return [tuple(r) for r in asyncio.run(run(
            at_0008, "SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'commission_frozen%' ORDER BY 1"))]

    before = functions()
    migrate.upgrade(at_0008)
    assert functions() != before
    migrate.downgrade(at_0008, "0008")
    assert functions() == before
    columns = asyncio.run(run(at_0008, "SELECT column_name FROM information_schema.columns "
                                       "WHERE table_name = 'commission_statements' AND column_name = 'rev_settlements'"))
    assert columns == []
