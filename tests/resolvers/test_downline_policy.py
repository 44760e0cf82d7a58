"""The downline policy (resolvers/viewer.py ``DataAccess``): of a downline affiliate D at
level L of an affiliate viewer, only D's own levels 1..5-L (inside the viewer's five levels)
and none of D's earnings, through GraphQL, REST and the exports alike; no side door (orders,
ranking, cursors); bad cursors and arguments are BAD_USER_INPUT, not internal errors.

A chain of its own: 501 → 502 → 503 → 504 → 505 → 506 (affiliates, each the referrer of the
next) → 507 (a player): 504 is at 501's level 3 (depth 2), 506 at its level 5 (depth 0) and
507 at its level 6 (never visible to 501).
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from openpyxl import load_workbook

from db.settings import Settings
from etl.sync import run_cycle
from tests.support.databases import drop_database, new_operation_database, new_robust_database
from tests.support.deployment import JWT_SECRET, PLAIN, Api, Deployment, rows, serve, token
from tests.support.factories import Operation
from web.graphiql import DASHBOARD_QUERY

A, L3, L5, PLAYER = 501, 504, 506, 507
CHAIN = range(501, 508)


@pytest.fixture(scope="module")
async def chain(robust_template: str) -> AsyncIterator[Deployment]:
    robust_url, operation_url = await new_robust_database(robust_template), await new_operation_database()
    op = await Operation.open(operation_url)
    try:
        for user in CHAIN:
            await op.user(user, f"Afiliado {user}", afiliado=user != PLAYER, at="2025-02-01 00:00Z")
        for user in CHAIN:
            day = 1 + user - 501
            if user != A:
                await op.track(user, user - 1, f"2025-03-{day:02d} 09:00Z")
            await op.deposit(user, "50.00", f"2025-03-{day:02d} 10:00Z")
            await op.bet(user, "80.00", "10.00", f"2025-03-{day:02d} 11:00Z")
            await op.bet(user, "30.00", "5.00", f"2025-03-{day + 2:02d} 12:00Z")  # qualifies
    finally:
        await op.close()
    settings = Settings(database_url=robust_url, operation_database_url=operation_url,
                        etl_scheduler_enabled=False, jwt_secret=JWT_SECRET, _env_file=None).model_copy(update=PLAIN)
    assert (await run_cycle(settings, robust_url, operation_url)).status == "success"
    yield Deployment(robust_url, operation_url, settings)
    for url in (robust_url, operation_url):
        await drop_database(url)


@pytest.fixture(scope="module")
async def served(chain: Deployment) -> AsyncIterator[Api]:
    async with serve(chain, role=None) as api:
        yield api


def headers(api: Api, role: str = "affiliate", affiliate_id: int | None = A) -> dict[str, str]:
    settings = api.app.state.api.settings
    return {"authorization": f"Bearer {token(settings, role, affiliate_id if role == 'affiliate' else None)}"}


async def graphql(api: Api, query: str, variables: dict[str, Any] | None = None, role: str = "affiliate",
                  affiliate_id: int | None = A) -> dict[str, Any]:
    response = await api.client.post("/graphql", json={"query": query, "variables": variables or {}},
                                     headers=headers(api, role, affiliate_id))
    assert response.status_code == 200, response.text
    return response.json()


async def data(api: Api, query: str, variables: dict[str, Any] | None = None, role: str = "affiliate",
               affiliate_id: int | None = A) -> dict[str, Any]:
    body = await graphql(api, query, variables, role, affiliate_id)
    assert "errors" not in body, body["errors"]
    return body["data"]


async def error(api: Api, query: str, variables: dict[str, Any] | None = None, role: str = "affiliate"
                ) -> dict[str, Any]:
    body = await graphql(api, query, variables, role)
    assert body.get("errors"), body
    return body["errors"][0]


async def get(api: Api, path: str, role: str = "affiliate", **params: Any) -> httpx.Response:
    return await api.client.get(path, params=params, headers=headers(api, role))


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


AFFILIATE = """query($id: ID!) { affiliate(id: $id) {
  id: affiliateId totalReferrals totalValidatedReferrals totalDeposits totalWithdrawals totalBets totalGgr
  totalCpaEarned totalRevEarned totalNetworkSize rankCpa rankReferrals
  network { totalNetworkSize levels { level count deposits bets ggr cpa rev } }
  referrals(first: 100) { totalCount nodes { referredUserId level totalDeposits totalBets cpaAmount } }
  transactions(first: 100) { totalCount nodes { userId level type amount } }
  cpaValidations(first: 100) { totalCount nodes { referredUserId cpaLevel cpaAmount userDeposits } }
  summaries(period: MONTHLY) { totalDeposits totalBets totalGgr cpaEarned revEarned newReferrals
    levels { level deposits cpa rev } }
} }"""

MONEY = ("totalCpaEarned", "totalRevEarned")
BEYOND = ("totalDeposits", "totalWithdrawals", "totalBets", "totalGgr", "totalNetworkSize", "rankCpa")


# ------------------------------------------------------------------ GraphQL
async def test_the_chain_is_what_the_tests_assume(served: Api) -> None:
    full = (await data(served, AFFILIATE, {"id": str(L5)}, role="admin"))["affiliate"]
    assert [n["referredUserId"] for n in full["referrals"]["nodes"]] == [str(PLAYER)]
    assert full["cpaValidations"]["totalCount"] == 1 and full["totalCpaEarned"] is not None
    deep = (await data(served, AFFILIATE, {"id": str(L3)}, role="admin"))["affiliate"]
    assert {n["level"] for n in deep["referrals"]["nodes"]} == {1, 2, 3}
    assert {n["cpaLevel"] for n in deep["cpaValidations"]["nodes"]} == {1, 2, 3}
    assert len(deep["network"]["levels"]) == 5 and deep["network"]["totalNetworkSize"] == 3


async def test_a_level_5_downline_shows_nothing_of_its_network_nor_its_money(served: Api) -> None:
    d = (await data(served, AFFILIATE, {"id": str(L5)}))["affiliate"]
    assert d["id"] == str(L5)
    assert all(d[f] is None for f in (*MONEY, *BEYOND, "totalReferrals", "totalValidatedReferrals",
                                      "rankReferrals"))
    assert d["network"] == {"totalNetworkSize": 0, "levels": []}
    for connection in ("referrals", "transactions", "cpaValidations"):
        assert d[connection] == {"totalCount": 0, "nodes": []}, connection
    assert d["summaries"] == []
    levels = await data(served, """query($id: ID!) { affiliate(id: $id) {
      one: referrals(level: 1) { totalCount nodes { referredUserId } }
      deposits: transactions(type: DEPOSIT, level: 1) { totalCount } } }""", {"id": str(L5)})
    assert levels["affiliate"]["one"] == {"totalCount": 0, "nodes": []}
    assert levels["affiliate"]["deposits"] == {"totalCount": 0}


async def test_a_level_3_downline_shows_its_levels_1_and_2_without_its_money(served: Api) -> None:
    full = (await data(served, AFFILIATE, {"id": str(L3)}, role="admin"))["affiliate"]
    d = (await data(served, AFFILIATE, {"id": str(L3)}))["affiliate"]
    assert all(d[f] is None for f in (*MONEY, *BEYOND))
    assert d["totalReferrals"] == full["totalReferrals"] == 1
    assert d["totalValidatedReferrals"] == full["totalValidatedReferrals"]
    # Network: levels 1..2, their activity as the admin sees it, no CPA or REV.
    assert [lv["level"] for lv in d["network"]["levels"]] == [1, 2]
    for shown, level in zip(d["network"]["levels"], full["network"]["levels"], strict=False):
        assert shown == {**level, "cpa": None, "rev": None}
    assert d["network"]["totalNetworkSize"] == 2
    # Referrals: the users at 501's levels 4 and 5, with their figures, without 504's CPA.
    assert {n["referredUserId"] for n in d["referrals"]["nodes"]} == {"505", "506"}
    assert d["referrals"]["totalCount"] == 2
    admin_referrals = {n["referredUserId"]: n for n in full["referrals"]["nodes"]}
    for n in d["referrals"]["nodes"]:
        assert n == {**admin_referrals[n["referredUserId"]], "cpaAmount": None}
    # Transactions: levels 1..2 only, and none of 504's own CPA/REV movements.
    assert d["transactions"]["nodes"] and {n["level"] for n in d["transactions"]["nodes"]} <= {1, 2}
    assert not {n["type"] for n in d["transactions"]["nodes"]} & {"CPA", "REV"}
    assert str(PLAYER) not in {n["userId"] for n in d["transactions"]["nodes"]}
    assert d["transactions"]["totalCount"] == len(d["transactions"]["nodes"])
    expected = [n for n in full["transactions"]["nodes"] if n["level"] <= 2 and n["type"] not in ("CPA", "REV")]
    assert d["transactions"]["nodes"] == expected
    # Validations: levels 1..2, amounts hidden.
    assert {n["cpaLevel"] for n in d["cpaValidations"]["nodes"]} == {1, 2}
    assert all(n["cpaAmount"] is None for n in d["cpaValidations"]["nodes"])
    assert d["cpaValidations"]["totalCount"] == 2
    # Summaries: no earnings; totals of the levels shown.
    assert d["summaries"]
    for s in d["summaries"]:
        assert s["cpaEarned"] is None and s["revEarned"] is None
        assert [lv["level"] for lv in s["levels"]] == [1, 2]
        assert all(lv["cpa"] is None and lv["rev"] is None for lv in s["levels"])
        assert Decimal(s["totalDeposits"]) == sum(Decimal(lv["deposits"]) for lv in s["levels"])
    assert sum(Decimal(s["totalDeposits"]) for s in d["summaries"]) == Decimal("100.00")  # 505, 506


async def test_the_viewer_sees_all_of_itself(served: Api) -> None:
    mine = (await data(served, AFFILIATE, {"id": str(A)}))["affiliate"]
    full = (await data(served, AFFILIATE, {"id": str(A)}, role="admin"))["affiliate"]
    assert mine == full and mine["totalCpaEarned"] is not None
    assert len(mine["network"]["levels"]) == 5 and mine["network"]["levels"][0]["cpa"] is not None


async def test_money_is_hidden_on_every_way_to_a_downline(served: Api) -> None:
    query = """{ me { referrals(first: 10) { nodes { level referredAffiliate { id: affiliateId totalCpaEarned totalDeposits
        cpaValidations { nodes { cpaAmount affiliate { id: affiliateId totalRevEarned } } } } } } }
      affiliates(first: 20) { nodes { id: affiliateId totalCpaEarned rankCpa upline { id: affiliateId totalCpaEarned } } } }"""
    got = await data(served, query)
    referred = [n["referredAffiliate"] for n in got["me"]["referrals"]["nodes"]]
    assert {r["id"] for r in referred} == {"502", "503", "504", "505", "506"}
    assert all(r["totalCpaEarned"] is None and r["totalDeposits"] is None for r in referred)
    for r in referred:
        for v in r["cpaValidations"]["nodes"]:
            assert v["cpaAmount"] is None and v["affiliate"]["totalRevEarned"] is None
    nodes = {n["id"]: n for n in got["affiliates"]["nodes"]}
    assert set(nodes) == {str(i) for i in range(501, 507)}
    assert nodes[str(A)]["totalCpaEarned"] is not None
    for i, n in nodes.items():
        if i != str(A):
            assert n["totalCpaEarned"] is None and n["rankCpa"] is None
            assert all(u["totalCpaEarned"] is None for u in n["upline"] if u["id"] != str(A))


# ------------------------------------------------------------------ side doors
@pytest.mark.parametrize("field", ["TOTAL_CPA_EARNED", "TOTAL_REV_EARNED", "TOTAL_DEPOSITS", "TOTAL_NETWORK_SIZE",
                                   "TOTAL_REFERRALS"])
async def test_affiliates_may_not_order_affiliates_by_a_hidden_field(served: Api, field: str) -> None:
    query = "query($f: AffiliateOrderField!) { affiliates(orderBy: {field: $f}) { nodes { id: affiliateId } } }"
    e = await error(served, query, {"f": field})
    assert e["extensions"]["code"] == "FORBIDDEN" and "order affiliates by ID only" in e["message"]
    assert (await data(served, query, {"f": field}, role="analyst"))["affiliates"]["nodes"]
    by_id = await data(served, query, {"f": "ID"})
    assert [n["id"] for n in by_id["affiliates"]["nodes"]] == [str(i) for i in range(506, 500, -1)]  # DESC


@pytest.mark.parametrize("metric", ["CPA_EARNED", "VALIDATED_REFERRALS"])
async def test_an_affiliates_ranking_holds_itself_only(served: Api, metric: str) -> None:
    query = "query($m: RankingMetric!) { ranking(metric: $m) { totalCount edges { cursor node { id: affiliateId rankCpa } } } }"
    everyone = (await data(served, query, {"m": metric}, role="admin"))["ranking"]
    assert everyone["totalCount"] == 6
    mine = (await data(served, query, {"m": metric}))["ranking"]
    assert mine["totalCount"] == 1 and [e["node"]["id"] for e in mine["edges"]] == [str(A)]
    assert mine["edges"][0]["node"]["rankCpa"] is not None


async def test_list_cursors_of_an_affiliate_carry_ids_only(served: Api) -> None:
    got = await data(served, "{ affiliates(first: 3) { pageInfo { endCursor } edges { cursor } } }")
    for edge in got["affiliates"]["edges"]:
        payload = orjson.loads(base64.urlsafe_b64decode(edge["cursor"] + "=" * (-len(edge["cursor"]) % 4)))
        assert payload[0] == "affiliates:affiliate_id:asc" and len(payload) == 2


def cursor(*payload: object) -> str:
    text = orjson.dumps([str(p) if isinstance(p, int) and p >= 2**63 else p for p in payload])
    text = text.replace(b'"%d"' % 2**70, b"%d" % 2**70)  # orjson writes no integer over 64 bits
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


@pytest.mark.parametrize("query,variables", [
    ("query($c: String) { affiliates(after: $c, orderBy: {field: TOTAL_GGR}) { totalCount nodes { id: affiliateId } } }",
     {"c": cursor("affiliates:total_ggr:desc", "1e999999999", 1)}),
    ("query($c: String) { affiliates(after: $c, orderBy: {field: TOTAL_GGR}) { totalCount nodes { id: affiliateId } } }",
     {"c": cursor("affiliates:total_ggr:desc", "NaN", 1)}),
    ("query($c: String) { affiliates(after: $c) { nodes { id: affiliateId } } }",
     {"c": cursor("affiliates:affiliate_id:asc", 2**70)}),
    ("query($c: String) { ranking(after: $c) { nodes { id: affiliateId } } }",
     {"c": cursor("ranking:rank_cpa", "1e-999999999", 1)}),
    ("query($c: String) { affiliate(id: 501) { referrals(after: $c) { nodes { level } } } }",
     {"c": cursor("referral", "0001-01-01T00:00:00+05:00", 1)}),
    ("query($c: String) { affiliate(id: 501) { transactions(after: $c) { nodes { level } } } }",
     {"c": cursor("transaction", "9999-12-31T23:59:59-05:00", 1)}),
    ("query($c: String) { affiliate(id: 501) { cpaValidations(after: $c) { nodes { cpaLevel } } } }",
     {"c": cursor("cpa_validation", "2025-03-01T00:00:00+00:00", 2**70)}),
    ('{ affiliate(id: 501) { transactions(from: "9999-12-31T23:00:00-05:00") { nodes { level } } } }', {}),
    ('{ affiliate(id: 501) { transactions(to: "0001-01-01T01:00:00+05:00") { nodes { level } } } }', {}),
    ('query($s: String) { affiliates(filter: {search: $s}) { nodes { id: affiliateId } } }', {"s": "Afil\u0000iado"}),
])
async def test_bad_values_are_bad_user_input(served: Api, query: str, variables: dict[str, Any]) -> None:
    e = await error(served, query, variables, role="admin")
    assert e["extensions"]["code"] == "BAD_USER_INPUT", e


# ------------------------------------------------------------------ query counts
async def count(api: Api, query: str, variables: dict[str, Any], role: str) -> int:
    await data(api, query, variables, role)
    with api.queries() as seen:
        await data(api, query, variables, role)
    return len(seen)


async def test_the_policy_costs_no_query_on_the_own_dashboard_and_one_on_a_list(served: Api) -> None:
    assert await count(served, DASHBOARD_QUERY, {"id": str(A)}, "affiliate") \
        == await count(served, DASHBOARD_QUERY, {"id": str(A)}, "admin")
    lst = "{ affiliates(first: 10) { nodes { id totalCpaEarned network { levels { cpa } } } } }"
    admin_count = await count(served, lst, {}, "admin")
    assert admin_count == 2  # the page, the networks
    assert await count(served, lst, {}, "affiliate") == admin_count + 1  # + the page's levels


# ------------------------------------------------------------------ REST
async def test_rest_answers_follow_the_policy(served: Api) -> None:
    base = "/api/v1/affiliates"
    deep = await get(served, f"{base}/{L5}/referrals")
    assert deep.status_code == 200
    assert deep.json()["referrals"] == [] and deep.json()["total_count"] == 0
    shown = (await get(served, f"{base}/{L3}/referrals")).json()
    assert {r["referred_id"] for r in shown["referrals"]} == {"505", "506"}
    assert all(r["cpa_amount"] is None and r["total_deposits"] is not None for r in shown["referrals"])
    structure = (await get(served, f"{base}/{L3}/mlm-structure")).json()
    assert [lv["level"] for lv in structure["levels"]] == [1, 2]
    assert all(lv["cpa"] is None and lv["rev"] is None for lv in structure["levels"])
    assert (await get(served, f"{base}/{L5}/mlm-structure")).json()["levels"] == []
    one = (await get(served, f"{base}/{L3}")).json()
    assert one["total_cpa_earned"] is None and one["total_rev_earned"] is None and one["total_referrals"] == 1
    summary = (await get(served, f"{base}/{L3}/financial-summary")).json()
    assert summary["total_cpa_earned"] is None
    assert summary["summaries"] and all(s["cpa_earned"] is None for s in summary["summaries"])
    mine = (await get(served, f"{base}/{A}")).json()
    assert mine["total_cpa_earned"] is not None


# ------------------------------------------------------------------ exports
async def test_exports_follow_the_policy(served: Api) -> None:
    exports = "/api/v1/exports"
    referrals = csv_rows(await get(served, f"{exports}/referrals", affiliate_id=L3))
    assert {r["referred_id"] for r in referrals} == {"505", "506"}
    assert all(r["cpa_amount"] == "" and r["total_deposits"] for r in referrals)
    assert csv_rows(await get(served, f"{exports}/referrals", affiliate_id=L5)) == []
    admin = csv_rows(await get(served, f"{exports}/referrals", "admin", affiliate_id=L5))
    assert [r["referred_id"] for r in admin] == [str(PLAYER)]

    summaries = csv_rows(await get(served, f"{exports}/summaries", affiliate_id=L3))
    assert summaries
    for s in summaries:
        assert s["cpa_earned"] == "" and s["rev_earned"] == ""
        assert s["level_1_cpa"] == "" and s["level_3_deposits"] == "" and s["level_5_new_referrals"] == ""
        assert s["level_1_deposits"] != ""
    assert csv_rows(await get(served, f"{exports}/summaries", affiliate_id=L5)) == []

    validations = csv_rows(await get(served, f"{exports}/validations", affiliate_id=L3))
    assert {r["cpa_level"] for r in validations} == {"1", "2"} and all(r["cpa_amount"] == "" for r in validations)
    own = csv_rows(await get(served, f"{exports}/validations"))
    assert own and {r["affiliate_id"] for r in own} == {str(A)} and all(r["cpa_amount"] for r in own)

    ranking = csv_rows(await get(served, f"{exports}/ranking"))
    assert [r["affiliate_id"] for r in ranking] == [str(A)]

    book = await get(served, f"{exports}/referrals", affiliate_id=L3, format="xlsx")
    assert book.status_code == 200
    sheet = load_workbook(io.BytesIO(book.content)).worksheets[0]
    cells = list(sheet.iter_rows(values_only=True))
    header = list(cells[0])
    assert {row[header.index("cpa_amount")] for row in cells[1:]} == {None} and len(cells) == 3


async def test_robust_rows_hold_what_the_policy_hides(chain: Deployment) -> None:
    """The data behind the hidden cells exists (the tests above are not vacuous)."""
    found = await rows(chain.robust_url, "SELECT count(*) FROM affiliate_referrals WHERE referrer_id = $1 "
                                         "AND mlm_level = 3 AND cpa_amount > 0", L3)
    assert found[0][0] == 1
