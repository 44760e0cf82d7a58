"""The REST compatibility endpoints return the same numbers as GraphQL."""

from __future__ import annotations

from tests.support.deployment import Api


async def test_affiliate_matches_graphql(api: Api) -> None:
    for affiliate_id in ("101", "300", "341"):
        rest = await api.client.get(f"/api/v1/affiliates/{affiliate_id}")
        assert rest.status_code == 200 and rest.headers["content-type"] == "application/json"
        gql = (await api.data(
            "query($id: ID!) { affiliate(id: $id) { id: affiliateId name status totalReferrals totalValidatedReferrals "
            "totalDeposits totalBets totalGgr totalCpaEarned totalRevEarned totalNetworkSize rankCpa } }",
            {"id": affiliate_id}))["affiliate"]
        body = rest.json()
        assert body["affiliate_id"] == gql["id"] and body["name"] == gql["name"]
        assert (body["total_deposits"], body["total_bets"], body["total_ggr"]) == (
            gql["totalDeposits"], gql["totalBets"], gql["totalGgr"])
        assert (body["total_cpa_earned"], body["total_rev_earned"]) == (gql["totalCpaEarned"], gql["totalRevEarned"])
        assert (body["total_referrals"], body["total_validated_referrals"], body["total_network_size"],
                body["rank_cpa"]) == (gql["totalReferrals"], gql["totalValidatedReferrals"],
                                      gql["totalNetworkSize"], gql["rankCpa"])
    ana = (await api.client.get("/api/v1/affiliates/101")).json()
    assert (ana["total_deposits"], ana["total_cpa_earned"], ana["total_rev_earned"]) == ("70.00", "50.00", "21.25")


async def test_mlm_structure_matches_graphql(api: Api) -> None:
    rest = (await api.client.get("/api/v1/affiliates/300/mlm-structure")).json()
    gql = (await api.data('{ affiliate(id: 300) { network { totalNetworkSize levels { level count deposits '
                          'bets ggr cpa rev } } } }'))["affiliate"]["network"]
    assert rest == {"affiliate_id": "300", "total_network_size": gql["totalNetworkSize"], "levels": gql["levels"]}


async def test_referrals_match_graphql_page_by_page(api: Api) -> None:
    url, seen = "/api/v1/affiliates/300/referrals?first=25&level=2", []
    while True:
        body = (await api.client.get(url)).json()
        seen += body["referrals"]
        if not body["page_info"]["has_next_page"]:
            break
        url = f"/api/v1/affiliates/300/referrals?first=25&level=2&after={body['page_info']['end_cursor']}"
    gql = (await api.data('{ affiliate(id: 300) { referrals(level: 2, first: 100) { totalCount nodes { '
                          'referredUserId level totalDeposits cpaAmount status } } } }'))["affiliate"]["referrals"]
    assert body["total_count"] == gql["totalCount"] == len(seen)
    assert [(r["referred_id"], r["mlm_level"], r["total_deposits"], r["cpa_amount"], r["status"]) for r in seen] == [
        (n["referredUserId"], n["level"], n["totalDeposits"], n["cpaAmount"], n["status"]) for n in gql["nodes"]]
    validated = (await api.client.get("/api/v1/affiliates/300/referrals?status=validated&first=100")).json()
    assert validated["referrals"] and {r["status"] for r in validated["referrals"]} == {"VALIDATED"}


async def test_financial_summary_matches_graphql(api: Api) -> None:
    rest = (await api.client.get("/api/v1/affiliates/300/financial-summary?period=weekly&from=2025-03-10")).json()
    gql = (await api.data('{ affiliate(id: 300) { totalCpaEarned totalRevEarned summaries(period: WEEKLY, '
                          'from: "2025-03-10") { periodStart cpaEarned revEarned totalGgr levels { level rev } } } }'
                          ))["affiliate"]
    assert (rest["total_cpa_earned"], rest["total_rev_earned"]) == (gql["totalCpaEarned"], gql["totalRevEarned"])
    assert [(s["period_start"], s["cpa_earned"], s["rev_earned"], s["total_ggr"]) for s in rest["summaries"]] == [
        (s["periodStart"], s["cpaEarned"], s["revEarned"], s["totalGgr"]) for s in gql["summaries"]]
    assert [lv["rev"] for lv in rest["summaries"][0]["levels"]] == [lv["rev"] for lv in gql["summaries"][0]["levels"]]
    monthly = (await api.client.get("/api/v1/affiliates/300/financial-summary")).json()
    assert {s["period_type"] for s in monthly["summaries"]} == {"MONTHLY"}


async def test_rest_errors(api: Api) -> None:
    cases = {
        "/api/v1/affiliates/999999": (404, "NOT_FOUND"),
        "/api/v1/affiliates/abc": (400, "BAD_USER_INPUT"),
        "/api/v1/affiliates/300/referrals?first=1000": (400, "BAD_USER_INPUT"),
        "/api/v1/affiliates/300/referrals?level=6": (400, "BAD_USER_INPUT"),
        "/api/v1/affiliates/300/referrals?level=two": (400, "BAD_USER_INPUT"),
        "/api/v1/affiliates/300/referrals?after=garbage": (400, "BAD_USER_INPUT"),
        "/api/v1/affiliates/300/referrals?status=maybe": (400, "BAD_USER_INPUT"),
        "/api/v1/affiliates/300/financial-summary?period=hourly": (400, "BAD_USER_INPUT"),
        "/api/v1/affiliates/300/financial-summary?from=2025-05-01&to=2025-04-01": (400, "BAD_USER_INPUT"),
        "/api/v1/affiliates/300/financial-summary?from=soon": (400, "BAD_USER_INPUT"),
        "/api/v1/affiliates/999999/mlm-structure": (404, "NOT_FOUND"),
    }
    for url, (status, code) in cases.items():
        response = await api.client.get(url)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (url, response.text)
        assert response.json()["error"]["message"]
