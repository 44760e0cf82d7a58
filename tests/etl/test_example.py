"""The worked example of EXAMPLE.md, figure by figure."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from etl.sync import run_cycle
from tests.support.factories import Operation, fetch, write_worked_example


@pytest.fixture
async def example(operation_url: str) -> None:
    op = await Operation.open(operation_url)
    await write_worked_example(op)
    await op.close()


async def test_worked_example(example: None, settings, robust_url: str, operation_url: str) -> None:
    result = await run_cycle(settings, robust_url, operation_url)
    assert result.status == "success"

    v = await fetch(robust_url, "SELECT * FROM affiliate_cpa_validations ORDER BY id")
    assert [
        (r["affiliate_id"], r["referred_user_id"], r["cpa_level"], r["cpa_amount"]) for r in v
    ] == [(101, 102, 1, D("50.00"))]
    assert v[0]["validation_date"].isoformat() == "2025-03-04T02:30:00+00:00"
    assert (v[0]["user_deposits"], v[0]["user_bets"], v[0]["days_active"]) == (
        D("50.00"),
        D("110.00"),
        2,
    )

    mlm = {
        r["affiliate_id"]: r
        for r in await fetch(robust_url, "SELECT * FROM affiliate_mlm_structure")
    }
    assert set(mlm) == {101, 102}
    expected = {
        (101, 1): (1, "50.00", "110.00", "65.00", "50.00", "16.25"),
        (101, 2): (1, "20.00", "200.00", "50.00", "0.00", "5.00"),
        (102, 1): (1, "20.00", "200.00", "50.00", "0.00", "12.50"),
    }
    for (aff, level), (count, dep, bets, ggr, cpa, rev) in expected.items():
        row = mlm[aff]
        assert row[f"level_{level}_count"] == count
        assert row[f"level_{level}_deposits"] == D(dep)
        assert row[f"level_{level}_bets"] == D(bets)
        assert row[f"level_{level}_ggr"] == D(ggr)
        assert row[f"level_{level}_cpa"] == D(cpa)
        assert row[f"level_{level}_rev"] == D(rev)
    assert mlm[102]["level_2_count"] == 0

    aff = {r["affiliate_id"]: r for r in await fetch(robust_url, "SELECT * FROM affiliates")}
    a = aff[101]
    assert (a["total_referrals"], a["total_validated_referrals"], a["total_network_size"]) == (
        1,
        1,
        2,
    )
    assert (a["total_deposits"], a["total_bets"], a["total_ggr"]) == (
        D("70.00"),
        D("310.00"),
        D("115.00"),
    )
    assert (a["total_cpa_earned"], a["total_rev_earned"]) == (D("50.00"), D("21.25"))
    b = aff[102]
    assert (b["total_referrals"], b["total_validated_referrals"]) == (1, 0)
    assert (b["total_deposits"], b["total_bets"], b["total_ggr"]) == (
        D("20.00"),
        D("200.00"),
        D("50.00"),
    )
    assert (b["total_cpa_earned"], b["total_rev_earned"]) == (D("0.00"), D("12.50"))

    weekly = await fetch(
        robust_url,
        "SELECT * FROM affiliate_periodic_summaries WHERE affiliate_id = 101 "
        "AND period_type = 'weekly' ORDER BY period_start",
    )
    got = [
        (
            str(r["period_start"]),
            r["new_referrals"],
            r["validated_referrals"],
            r["total_deposits"],
            r["total_bets"],
            r["total_ggr"],
            r["cpa_earned"],
            r["rev_earned"],
        )
        for r in weekly
    ]
    assert got == [
        ("2025-02-24", 1, 0, D("50.00"), D("80.00"), D("80.00"), D("0.00"), D("20.00")),
        ("2025-03-03", 0, 1, D("20.00"), D("230.00"), D("35.00"), D("50.00"), D("1.25")),
    ]
    breakdown = weekly[1]["level_breakdown"]
    breakdown = json.loads(breakdown) if isinstance(breakdown, str) else breakdown
    assert breakdown["1"] == {
        "new_referrals": 0,
        "deposits": "0.00",
        "bets": "30.00",
        "ggr": "-15.00",
        "cpa": "50.00",
        "rev": "-3.75",
    }
    assert breakdown["2"] == {
        "new_referrals": 1,
        "deposits": "20.00",
        "bets": "200.00",
        "ggr": "50.00",
        "cpa": "0.00",
        "rev": "5.00",
    }
    assert set(breakdown) == {"1", "2", "3", "4", "5"}

    daily = await fetch(
        robust_url,
        "SELECT period_start::text, rev_earned, cpa_earned FROM affiliate_periodic_summaries "
        "WHERE affiliate_id = 101 AND period_type = 'daily' ORDER BY period_start",
    )
    assert [tuple(r) for r in daily] == [
        ("2025-03-02", D("20.00"), D("0.00")),
        ("2025-03-03", D("-3.75"), D("50.00")),
        ("2025-03-05", D("5.00"), D("0.00")),
    ]
