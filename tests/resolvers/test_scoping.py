"""Every role against every field and REST endpoint: affiliates see themselves and their
downline (levels 1-5) only, with the downline's personal data masked; analysts see all with
e-mail and phone masked; admins see all and alone run mutations."""

from __future__ import annotations

import sys
import types

import pytest

from resolvers.global_ids import global_id
from tests.support.clients import AFFILIATE, CHILD, GRANDCHILD, ROOT, SIBLING, Clients
from tests.support.deployment import Api, Deployment, rows, token
from web.graphiql import DASHBOARD_QUERY

EVERY_FIELD = """query($id: ID!) { affiliate(id: $id) {
  id: affiliateId name email phone status totalReferrals totalValidatedReferrals totalDeposits totalWithdrawals
  totalBets totalGgr totalCpaEarned totalRevEarned totalNetworkSize rankCpa rankReferrals registeredAt
  network { totalNetworkSize levels { level count cpa } }
  referrals(first: 100) { totalCount nodes { referredUserId level totalDeposits referredAffiliate { id: affiliateId name email } } }
  cpaValidations(first: 5) { totalCount nodes { id: validationId cpaAmount affiliate { id: affiliateId name } } }
  transactions(first: 5) { totalCount nodes { id: transactionId amount } }
  summaries(period: MONTHLY) { cpaEarned levels { level cpa } }
  upline { id: affiliateId name email }
} }"""
LEVEL_5 = 361  # 301 > 326 > 341 > 351 > 357 > 361
COUSIN = 327  # a child of 302: not in 301's downline
REST = ("", "/mlm-structure", "/referrals", "/financial-summary")


async def test_admin_sees_everything(secure: Clients) -> None:
    admin = secure.headers("admin")
    for affiliate_id in (ROOT, AFFILIATE, SIBLING, LEVEL_5):
        node = (await secure.data(admin, EVERY_FIELD, {"id": affiliate_id}))["affiliate"]
        assert node["id"] == str(affiliate_id) and node["email"] == f"user{affiliate_id}@example.com"
        assert node["phone"].startswith("+55") and not node["name"].endswith("***")
    upline = (await secure.data(admin, EVERY_FIELD, {"id": LEVEL_5}))["affiliate"]["upline"]
    assert [u["id"] for u in upline] == ["357", "351", "341", "326", "301"]
    assert (await secure.data(admin, "{ me { id } }")) == {"me": None}


async def test_analyst_sees_everything_masked(secure: Clients) -> None:
    analyst = secure.headers("analyst")
    node = (await secure.data(analyst, EVERY_FIELD, {"id": ROOT}))["affiliate"]
    assert node["name"] == "Bia Raiz" and node["email"] == "u***@example.com" and node["phone"] == "***00"
    assert node["network"]["totalNetworkSize"] == 60
    assert all(r["referredAffiliate"]["email"] == "u***@example.com" for r in node["referrals"]["nodes"])
    listed = (await secure.data(analyst, "{ affiliates(first: 100) { totalCount nodes { email phone } } }"))
    assert listed["affiliates"]["totalCount"] == len(await rows(secure.api.app.state.api.robust_url,
                                                                "SELECT 1 FROM affiliates"))
    assert all(n["email"] in (None, "u***@example.com") for n in listed["affiliates"]["nodes"])
    # search never matches a masked column (it would be an oracle)
    by_mail = await secure.data(analyst, '{ affiliates(filter: {search: "user300@"}) { totalCount } }')
    assert by_mail["affiliates"]["totalCount"] == 0


async def test_affiliate_sees_itself_fully(secure: Clients) -> None:
    me = secure.headers("affiliate", AFFILIATE)
    data = await secure.data(me, "{ me { id: affiliateId name email phone upline { id: affiliateId } } }")
    assert data["me"] == {"id": "301", "name": "Afiliado 301", "email": "user301@example.com",
                          "phone": "+55 11 900000301", "upline": []}  # 300 is invisible
    node = (await secure.data(me, EVERY_FIELD, {"id": AFFILIATE}))["affiliate"]
    assert node["email"] == "user301@example.com"
    referred = {r["referredUserId"]: r["referredAffiliate"] for r in node["referrals"]["nodes"]}
    assert referred[str(CHILD)] == {"id": str(CHILD), "name": "A*** 3***", "email": None}
    assert node["referrals"]["totalCount"] == len(node["referrals"]["nodes"]) > 20


@pytest.mark.parametrize("downline", [CHILD, GRANDCHILD, LEVEL_5])
async def test_affiliate_reads_its_downline_masked(secure: Clients, downline: int) -> None:
    me = secure.headers("affiliate", AFFILIATE)
    node = (await secure.data(me, EVERY_FIELD, {"id": downline}))["affiliate"]
    assert node["id"] == str(downline)
    assert (node["name"], node["email"], node["phone"]) == ("A*** 3***", None, None)
    # its upline stops at the viewer: 300 (the viewer's own upline) is invisible
    assert [u["id"] for u in node["upline"]][-1] == str(AFFILIATE)
    assert "300" not in {u["id"] for u in node["upline"]}
    assert {u["name"] for u in node["upline"] if u["id"] != str(AFFILIATE)} <= {"A*** 3***"}
    for endpoint in REST:
        response = await secure.api.client.get(f"/api/v1/affiliates/{downline}{endpoint}", headers=me)
        assert response.status_code == 200, (endpoint, response.text)
    body = (await secure.api.client.get(f"/api/v1/affiliates/{downline}", headers=me)).json()
    assert (body["name"], body["email"], body["phone"]) == ("A*** 3***", None, None)


@pytest.mark.parametrize("stranger", [ROOT, SIBLING, COUSIN, 101, 999999])
async def test_uplines_and_others_are_invisible_like_unknown_ids(secure: Clients, stranger: int) -> None:
    me = secure.headers("affiliate", AFFILIATE)
    response = await secure.post(me, EVERY_FIELD, {"id": stranger})
    assert response.json()["data"] == {"affiliate": None} and "errors" not in response.json()
    for endpoint in REST:
        rest = await secure.api.client.get(f"/api/v1/affiliates/{stranger}{endpoint}", headers=me)
        assert rest.status_code == 404 and rest.json()["error"]["code"] == "NOT_FOUND", endpoint
    assert str(stranger) not in rest.text or stranger == 999999 or "no affiliate" in rest.text


async def test_lists_and_ranking_are_scoped(secure: Clients) -> None:
    me = secure.headers("affiliate", AFFILIATE)
    listed = await secure.data(me, "{ affiliates(first: 100) { totalCount nodes { id: affiliateId } } }")
    ids = {int(n["id"]) for n in listed["affiliates"]["nodes"]}
    downline = {r["referred_id"] for r in await rows(
        secure.api.app.state.api.robust_url,
        f"SELECT referred_id FROM affiliate_referrals WHERE referrer_id = {AFFILIATE}")}
    assert ids == {AFFILIATE} | downline and listed["affiliates"]["totalCount"] == len(ids)
    assert {int(n["id"]) for n in (await secure.data(me, "{ ranking(first: 100) { nodes { id: affiliateId } } }")
                                   )["ranking"]["nodes"]} <= ids
    active = secure.headers("affiliate", CHILD)  # 301 is inactive (no rank); 326 is active
    ranked = (await secure.data(active, "{ ranking(first: 100) { nodes { id: affiliateId rankCpa } } }"))["ranking"]["nodes"]
    own = (await secure.data(secure.headers("admin"), f'{{ affiliate(id: {CHILD}) {{ rankCpa }} }}'))
    assert own["affiliate"]["rankCpa"] is not None
    assert {"id": str(CHILD), "rankCpa": own["affiliate"]["rankCpa"]} in ranked  # its own global position
    assert "300" not in {n["id"] for n in ranked} and "301" not in {n["id"] for n in ranked}
    search = await secure.post(me, '{ affiliates(filter: {search: "Afiliado"}) { totalCount } }')
    assert search.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_mutations_are_for_admins(secure: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("etl.validate_now")

    async def validate(robust_url: str, affiliate_id: int, settings: object) -> list[int]:
        return []

    module.validate_affiliate_network = validate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "etl.validate_now", module)
    mutation = 'mutation { validateCpa(affiliateId: "301") { affiliateId validations { id: validationId } } }'
    for role, affiliate_id in (("analyst", None), ("affiliate", AFFILIATE)):
        headers = secure.headers(role, affiliate_id)
        error = (await secure.post(headers, mutation)).json()["errors"][0]
        assert error["extensions"]["code"] == "FORBIDDEN"
        rest = await secure.api.client.post("/api/v1/affiliates/301/validate-cpa", headers=headers)
        assert rest.status_code == 403 and rest.json()["error"]["code"] == "FORBIDDEN"
    admin = secure.headers("admin")
    assert (await secure.data(admin, mutation))["validateCpa"] == {"affiliateId": "301", "validations": []}
    assert (await secure.api.client.post("/api/v1/affiliates/301/validate-cpa", headers=admin)).status_code == 200


async def test_scoping_adds_at_most_one_statement(api: Api, deployment: Deployment) -> None:
    """The own dashboard costs no extra statement (compiled: one in all); a downline member's
    costs one more than the general path's five (uncached app)."""
    for (role, affiliate_id), target, statements in ((("admin", None), ROOT, 1),
                                                     (("affiliate", AFFILIATE), AFFILIATE, 1),
                                                     (("affiliate", AFFILIATE), CHILD, 6)):
        headers = {"authorization": f"Bearer {token(deployment.settings, role, affiliate_id)}"}
        payload = {"query": DASHBOARD_QUERY, "variables": {"id": str(target)}}
        await api.client.post("/graphql", json=payload, headers=headers)  # warm the pool
        with api.queries() as seen:
            response = await api.client.post("/graphql", json=payload, headers=headers)
        assert response.json()["data"]["affiliate"]["id"] == global_id("Affiliate", target)
        assert len(seen) == statements, "\n".join(seen)
