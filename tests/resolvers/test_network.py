"""Network levels and periodic summaries against the robust tables, to the cent."""

from __future__ import annotations

import json
from decimal import Decimal as D

from tests.support.deployment import Api, Deployment, rows

LEVEL_FIELDS = ("count", "deposits", "bets", "ggr", "cpa", "rev")


async def test_network_levels_equal_the_mlm_structure(api: Api, deployment: Deployment) -> None:
    mlm = {r["affiliate_id"]: r for r in await rows(deployment.robust_url, "SELECT * FROM affiliate_mlm_structure")}
    data = await api.data(
        "{ affiliates(first: 100) { edges { node { id: affiliateId network { totalNetworkSize "
        "levels { level count deposits bets ggr cpa rev } } } } } }"
    )
    nodes = [e["node"] for e in data["affiliates"]["edges"]]
    assert {int(n["id"]) for n in nodes} == set(mlm)
    for node in nodes:
        row, network = mlm[int(node["id"])], node["network"]
        assert network["totalNetworkSize"] == row["total_network_size"]
        assert [lv["level"] for lv in network["levels"]] == [1, 2, 3, 4, 5]
        for lv in network["levels"]:
            for field in LEVEL_FIELDS:
                expected = row[f"level_{lv['level']}_{field}"]
                got = lv[field]
                assert (got if field == "count" else D(got)) == expected, (node["id"], lv["level"], field)


async def test_worked_example_levels(api: Api) -> None:
    data = await api.data('{ affiliate(id: 101) { network { levels { level count deposits bets ggr cpa rev } } } }')
    levels = data["affiliate"]["network"]["levels"]
    assert levels[0] == {"level": 1, "count": 1, "deposits": "50.00", "bets": "110.00", "ggr": "65.00",
                         "cpa": "50.00", "rev": "16.25"}
    assert levels[1] == {"level": 2, "count": 1, "deposits": "20.00", "bets": "200.00", "ggr": "50.00",
                         "cpa": "0.00", "rev": "5.00"}


SUMMARY = """query($id: ID!, $p: PeriodType!) { affiliate(id: $id) { summaries(period: $p) {
  periodType periodStart newReferrals validatedReferrals totalDeposits totalBets totalGgr cpaEarned
  revEarned levels { level newReferrals deposits bets ggr cpa rev } } } }"""


async def test_summaries_equal_the_table(api: Api, deployment: Deployment) -> None:
    table = await rows(deployment.robust_url, "SELECT * FROM affiliate_periodic_summaries "
                                          "WHERE affiliate_id IN (101, 300, 301, 341) "
                                          "ORDER BY affiliate_id, period_type, period_start")
    for affiliate_id in (101, 300, 301, 341):
        for period in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY"):
            got = (await api.data(SUMMARY, {"id": affiliate_id, "p": period}))["affiliate"]["summaries"]
            expected = [r for r in table if r["affiliate_id"] == affiliate_id
                        and r["period_type"] == period.lower()]
            assert len(got) == len(expected) > 0
            for g, r in zip(got, expected, strict=True):
                assert g["periodStart"] == r["period_start"].isoformat()
                assert (g["newReferrals"], g["validatedReferrals"]) == (r["new_referrals"], r["validated_referrals"])
                for field, column in (("totalDeposits", "total_deposits"), ("totalBets", "total_bets"),
                                      ("totalGgr", "total_ggr"), ("cpaEarned", "cpa_earned"),
                                      ("revEarned", "rev_earned")):
                    assert g[field] == f"{r[column]:.2f}"
                breakdown = r["level_breakdown"]
                breakdown = json.loads(breakdown) if isinstance(breakdown, str) else breakdown
                for lv in g["levels"]:
                    part = breakdown[str(lv["level"])]
                    assert lv["newReferrals"] == part["new_referrals"]
                    for field in ("deposits", "bets", "ggr", "cpa", "rev"):
                        assert lv[field] == part[field]


async def test_summaries_range_and_last(api: Api) -> None:
    q = ('{ affiliate(id: 300) { a: summaries(period: DAILY, from: "2025-03-10", to: "2025-03-12") { periodStart } '
         'b: summaries(period: DAILY, last: 3) { periodStart } all: summaries(period: DAILY) { periodStart } '
         'c: summaries(period: WEEKLY, last: 1000) { periodStart } } }')
    data = (await api.data(q))["affiliate"]
    assert [s["periodStart"] for s in data["a"]] == ["2025-03-10", "2025-03-11", "2025-03-12"]
    assert data["b"] == data["all"][-3:]
    assert [s["periodStart"] for s in data["c"]] == sorted(s["periodStart"] for s in data["c"])


async def test_weekly_example_to_the_cent(api: Api) -> None:
    got = (await api.data(SUMMARY, {"id": "101", "p": "WEEKLY"}))["affiliate"]["summaries"]
    assert [(s["periodStart"], s["cpaEarned"], s["revEarned"]) for s in got] == [
        ("2025-02-24", "0.00", "20.00"), ("2025-03-03", "50.00", "1.25")]
    assert got[1]["levels"][0] == {"level": 1, "newReferrals": 0, "deposits": "0.00", "bets": "30.00",
                                   "ggr": "-15.00", "cpa": "50.00", "rev": "-3.75"}
