"""Affiliates, lists and ranking against the robust tables, to the cent."""

from __future__ import annotations

from decimal import Decimal as D

from tests.support.deployment import Api, Deployment, rows

FIELDS = """id: affiliateId name email phone status totalReferrals totalValidatedReferrals totalDeposits
totalWithdrawals totalBets totalGgr totalCpaEarned totalRevEarned totalNetworkSize rankCpa
rankReferrals"""

COLUMNS = {
    "totalReferrals": "total_referrals", "totalValidatedReferrals": "total_validated_referrals",
    "totalDeposits": "total_deposits", "totalWithdrawals": "total_withdrawals",
    "totalBets": "total_bets", "totalGgr": "total_ggr", "totalCpaEarned": "total_cpa_earned",
    "totalRevEarned": "total_rev_earned", "totalNetworkSize": "total_network_size",
    "rankCpa": "rank_cpa", "rankReferrals": "rank_referrals",
}


async def all_pages(api: Api, args: str = "", page: int = 7) -> list[dict]:
    nodes, after = [], None
    while True:
        data = await api.data(
            f"query($after: String) {{ affiliates(first: {page}, after: $after{args}) "
            f"{{ totalCount edges {{ cursor node {{ {FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}",
            {"after": after},
        )
        conn = data["affiliates"]
        nodes += [e["node"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            assert len(nodes) == conn["totalCount"]
            return nodes
        assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        after = conn["pageInfo"]["endCursor"]


async def test_the_worked_example_to_the_cent(api: Api) -> None:
    data = await api.data(f'{{ a: affiliate(id: "101") {{ {FIELDS} }} b: affiliate(id: 102) {{ {FIELDS} }} }}')
    a, b = data["a"], data["b"]
    assert (a["name"], a["status"], a["totalReferrals"], a["totalValidatedReferrals"]) == ("Ana", "ACTIVE", 1, 1)
    assert (a["totalDeposits"], a["totalBets"], a["totalGgr"]) == ("70.00", "310.00", "115.00")
    assert (a["totalCpaEarned"], a["totalRevEarned"], a["totalNetworkSize"]) == ("50.00", "21.25", 2)
    assert (b["totalDeposits"], b["totalBets"], b["totalGgr"]) == ("20.00", "200.00", "50.00")
    assert (b["totalCpaEarned"], b["totalRevEarned"], b["totalValidatedReferrals"]) == ("0.00", "12.50", 0)


async def test_every_affiliate_equals_its_row(api: Api, deployment: Deployment) -> None:
    table = {r["affiliate_id"]: r for r in await rows(deployment.robust_url, "SELECT * FROM affiliates_ranked")}
    nodes = await all_pages(api)
    assert [int(n["id"]) for n in nodes] == sorted(table)  # default order: id ascending
    assert len(nodes) > 60
    for node in nodes:
        row = table[int(node["id"])]
        assert (node["name"], node["email"], node["phone"]) == (row["name"], row["email"], row["phone"])
        assert node["status"] == row["status"].upper()
        for field, column in COLUMNS.items():
            value = node[field]
            expected = row[column]
            assert (D(value) if isinstance(expected, D) else value) == expected, (node["id"], field)
            if isinstance(expected, D):
                assert value == f"{expected:.2f}"  # a decimal string with cents, never a float


async def test_unknown_affiliate_is_null(api: Api) -> None:
    assert (await api.data('{ affiliate(id: "999999") { id } }')) == {"affiliate": None}


async def test_order_by_a_total_both_ways_with_stable_cursors(api: Api, deployment: Deployment) -> None:
    table = await rows(deployment.robust_url, "SELECT affiliate_id, total_cpa_earned FROM affiliates")
    expected_desc = [r["affiliate_id"] for r in sorted(table, key=lambda r: (-r[1], -r[0]))]
    desc = await all_pages(api, ", orderBy: {field: TOTAL_CPA_EARNED, direction: DESC}", page=9)
    assert [int(n["id"]) for n in desc] == expected_desc
    asc = await all_pages(api, ", orderBy: {field: TOTAL_CPA_EARNED, direction: ASC}", page=50)
    assert [int(n["id"]) for n in asc] == expected_desc[::-1]

    # The same cursor gives the same next page, however often it is used.
    query = ("query($after: String) { affiliates(first: 5, after: $after, orderBy: {field: TOTAL_BETS}) "
             "{ edges { cursor node { id } } } }")
    first = (await api.data(query, {"after": None}))["affiliates"]["edges"]
    again = [(await api.data(query, {"after": first[2]["cursor"]}))["affiliates"]["edges"] for _ in range(2)]
    assert again[0] == again[1]
    assert [e["node"]["id"] for e in again[0][:2]] == [e["node"]["id"] for e in first[3:]]


async def test_filter_by_status_and_search(api: Api, deployment: Deployment) -> None:
    inactive = await all_pages(api, ", filter: {status: INACTIVE}")
    expected = await rows(deployment.robust_url, "SELECT affiliate_id FROM affiliates WHERE status = 'inactive' ORDER BY 1")
    assert [int(n["id"]) for n in inactive] == [r[0] for r in expected] and inactive
    found = await all_pages(api, ', filter: {search: "bia"}')
    assert [n["name"] for n in found] == ["Bia Raiz"]
    by_email = await all_pages(api, ', filter: {search: "USER34"}')
    assert sorted(int(n["id"]) for n in by_email) == [340, 341, 342, 343, 344, 345, 346, 347, 348, 349]
    assert await all_pages(api, ', filter: {search: "100%_"}') == []


async def test_ranking_is_the_precomputed_rank(api: Api, deployment: Deployment) -> None:
    table = await rows(deployment.robust_url, "SELECT affiliate_id, rank_cpa, rank_referrals FROM affiliates_ranked "
                                          "WHERE rank_cpa IS NOT NULL")
    for metric, column in (("CPA_EARNED", "rank_cpa"), ("VALIDATED_REFERRALS", "rank_referrals")):
        nodes, after = [], None
        while True:
            conn = (await api.data(
                "query($m: RankingMetric!, $after: String) { ranking(metric: $m, first: 10, after: $after) "
                "{ totalCount edges { node { id: affiliateId rankCpa rankReferrals } } pageInfo { hasNextPage endCursor } } }",
                {"m": metric, "after": after}))["ranking"]
            nodes += [e["node"] for e in conn["edges"]]
            if not conn["pageInfo"]["hasNextPage"]:
                break
            after = conn["pageInfo"]["endCursor"]
        expected = sorted(table, key=lambda r: (r[column], r["affiliate_id"]))
        assert [int(n["id"]) for n in nodes] == [r["affiliate_id"] for r in expected]
        assert conn["totalCount"] == len(table)
    assert nodes[0]["rankReferrals"] == 1


async def test_upline_is_p1_to_p5(api: Api) -> None:
    data = await api.data('{ affiliate(id: "361") { upline { id: affiliateId } } root: affiliate(id: "300") { upline { id: affiliateId } } }')
    assert [u["id"] for u in data["affiliate"]["upline"]] == ["357", "351", "341", "326", "301"]
    assert data["root"]["upline"] == []
