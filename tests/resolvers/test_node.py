"""Relay's Node: every Node type's id, taken from a list, gives the same object back through
`node(id:)` and `nodes(ids:)`; an affiliate token reaches only what its root fields reach (null
otherwise, like an unknown id); a malformed id is a BAD_USER_INPUT error; lookups are batched,
one SQL statement per type."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from resolvers.global_ids import global_id
from tests.support.clients import AFFILIATE, CHILD, GRANDCHILD, ROOT, SIBLING, Clients
from tests.support.deployment import Api, Deployment, rows
from tests.support.program import Program

# Each Node type: the list to take ids from (a document and the path to its objects) and the
# fields compared.
FIELDS = {
    "Affiliate": "id affiliateId name email totalReferrals totalCpaEarned totalDeposits",
    "Referral": "id referredUserId level referralDate status totalDeposits cpaAmount",
    "CpaValidation": "id validationId affiliateId referredUserId cpaLevel cpaAmount cpaStatus validationDate",
    "Transaction": "id transactionId userId level type amount transactionDate",
    "Statement": "id statementId affiliateId month status payable",
    "CommissionPlan": "id planId name isDefault versions { id planVersionId }",
    "CommissionPlanVersion": "id planVersionId planId effectiveFrom cpaByLevel revShareByLevel",
    "QualificationCriteria": "id criteriaId effectiveFrom minDeposits minStake minActiveDays",
    "SyncRun": "id runId mode status startedAt",
    "AuditEntry": "id auditEntryId action entity entityId actor",
}
LISTS = {
    "Affiliate": ("{ affiliates(first: 30) { nodes { %s } } }", ("affiliates", "nodes")),
    "Referral": ('{ affiliate(id: "300") { referrals(first: 30) { nodes { %s } } } }',
                 ("affiliate", "referrals", "nodes")),
    "CpaValidation": ('{ affiliate(id: "300") { cpaValidations(first: 30) { nodes { %s } } } }',
                      ("affiliate", "cpaValidations", "nodes")),
    # Every type of movement, with and without a user and a source row.
    "Transaction": ('{ affiliate(id: "300") { transactions(first: 100) { nodes { %s } } } }',
                    ("affiliate", "transactions", "nodes")),
    "Statement": ('{ statementsConnection(month: "2025-03-01", first: 30) { nodes { %s } } }',
                  ("statementsConnection", "nodes")),
    "CommissionPlan": ("{ commissionPlans { %s } }", ("commissionPlans",)),
    "CommissionPlanVersion": ("{ commissionPlans { versions { %s } } }", ("commissionPlans", "versions")),
    "QualificationCriteria": ("{ qualificationCriteria { %s } }", ("qualificationCriteria",)),
    "SyncRun": ("{ syncStatus { lastSuccessfulRun { %s } } }", ("syncStatus", "lastSuccessfulRun")),
    "AuditEntry": ("{ commissionAuditLogConnection(first: 30) { nodes { %s } } }",
                   ("commissionAuditLogConnection", "nodes")),
}


def objects(data: Any, path: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects at ``path``, lists flattened."""
    found = [data]
    for key in path:
        found = [item[key] for item in found]
        found = [x for item in found for x in (item if isinstance(item, list) else [item])]
    return found


def by_node(type_name: str) -> str:
    return f"... on {type_name} {{ __typename {FIELDS[type_name]} }}"


async def round_trip(data: Any, type_name: str) -> int:
    """``node`` and ``nodes`` of every object the list gave: the same objects; how many."""
    listed = objects(await data(LISTS[type_name][0] % FIELDS[type_name]), LISTS[type_name][1])
    assert listed, type_name
    ids = [o["id"] for o in listed]
    assert len(set(ids)) == len(ids), f"{type_name}: ids are not unique"
    got = (await data(f"query($ids: [ID!]!) {{ nodes(ids: $ids) {{ {by_node(type_name)} }} }}",
                      {"ids": ids}))["nodes"]
    assert got == [{"__typename": type_name, **o} for o in listed]
    one = await data(f"query($id: ID!) {{ node(id: $id) {{ id {by_node(type_name)} }} }}", {"id": ids[0]})
    assert one["node"] == {"__typename": type_name, **listed[0]}
    return len(listed)


@pytest.mark.parametrize("type_name", [t for t in FIELDS if t != "AuditEntry"])
async def test_node_round_trips(api: Api, type_name: str) -> None:
    assert await round_trip(api.data, type_name) >= 1


async def test_audit_entry_round_trip(program: Program) -> None:
    create = """mutation($n: String!) { createCommissionPlan(name: $n, terms: {cpaByLevel: ["1","1","1","1","1"],
      revShareByLevel: ["0.1","0","0","0","0"]}) { id planId } }"""
    for name in ("Node A", "Node B"):
        await program.data(create, {"n": name})
    assert await round_trip(program.data, "AuditEntry") >= 2
    # A plan made through the API is a node too, the same with its number or its global id.
    plans = (await program.data("{ commissionPlans { id planId name } }"))["commissionPlans"]
    mine = next(p for p in plans if p["name"] == "Node A")
    assert mine["id"] == global_id("CommissionPlan", int(mine["planId"]))
    for ref in (mine["planId"], mine["id"]):
        assert (await program.data("query($id: ID!) { commissionPlan(id: $id) { name } }", {"id": ref}))[
            "commissionPlan"] == {"name": "Node A"}
    # The audit log is for admin tokens: an analyst's node of an entry is refused as the list is.
    entry = (await program.data("{ commissionAuditLogConnection(first: 1) { nodes { id } } }"))[
        "commissionAuditLogConnection"]["nodes"][0]["id"]
    for role in ("analyst", "affiliate"):
        listed = await program.error("{ commissionAuditLogConnection(first: 1) { totalCount } }", role=role,
                                     affiliate_id=1 if role == "affiliate" else None)
        refused = await program.error("query($id: ID!) { node(id: $id) { id } }", {"id": entry}, role=role,
                                      affiliate_id=1 if role == "affiliate" else None)
        assert refused["extensions"]["code"] == listed["extensions"]["code"] == "FORBIDDEN"
        assert refused["message"] == listed["message"]


async def test_ids_are_opaque_stable_and_typed(api: Api, deployment: Deployment) -> None:
    data = await api.data('{ affiliate(id: "300") { id affiliateId referrals(first: 1) { nodes { id '
                          'referredUserId } } } }')
    affiliate = data["affiliate"]
    assert affiliate["id"] == base64.b64encode(b"Affiliate:300").decode() != affiliate["affiliateId"]
    referral = affiliate["referrals"]["nodes"][0]
    assert referral["id"] == global_id("Referral", 300, int(referral["referredUserId"]))
    # The root field takes the number or the global id, and the same object comes back.
    by_global = await api.data('query($id: ID!) { affiliate(id: $id) { id affiliateId } }',
                               {"id": affiliate["id"]})
    assert by_global["affiliate"] == {"id": affiliate["id"], "affiliateId": "300"}
    # A transaction's id is made of what the ETL keeps (a full run renumbers rows): the same
    # row found by its stored key.
    tx = (await api.data('{ affiliate(id: "300") { transactions(first: 1) { nodes { id transactionId } } } }'))[
        "affiliate"]["transactions"]["nodes"][0]
    row = (await rows(deployment.robust_url, "SELECT * FROM affiliate_financial_transactions WHERE id = $1",
                      int(tx["transactionId"])))[0]
    assert tx["id"] == global_id("Transaction", row["affiliate_id"], row["transaction_date"],
                                 row["transaction_type"], row["mlm_level"], row["user_id"], row["source_id"])


def gid(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


@pytest.mark.parametrize("bad", [
    "abc", "", "300", "!!!!", gid("Nope:1"), gid("Affiliate"), gid("Affiliate:x"), gid("Affiliate:0"),
    gid("Affiliate:1:2"), gid("Referral:300"), gid("Statement:300:2025-13"), gid("Transaction:1:x:bet:1::"),
    gid("Transaction:1:0:bet:9::"), "A" * 5000, base64.b64encode(b"\xff\xfe").decode(),
])
async def test_a_malformed_id_is_bad_user_input(api: Api, bad: str) -> None:
    for query, variables in (("query($id: ID!) { node(id: $id) { id } }", {"id": bad}),
                             ("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": [gid("Affiliate:300"), bad]})):
        response = await api.client.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text[:300]
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert "global id" in error["message"] and "Traceback" not in response.text


async def test_a_global_id_of_another_type_is_refused_where_a_type_is_expected(api: Api) -> None:
    error = await api.error('query($id: ID!) { affiliate(id: $id) { id } }', {"id": global_id("CpaValidation", 1)})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"] == "id must be an id of type Affiliate, got the global id of type CpaValidation"
    unknown = await api.data("query($id: ID!) { node(id: $id) { id } }", {"id": global_id("Affiliate", 999999)})
    assert unknown == {"node": None}
    too_many = await api.error("query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
                               {"ids": [global_id("Affiliate", 300)] * 101})
    assert too_many["extensions"]["code"] == "BAD_USER_INPUT" and "at most 100" in too_many["message"]


NODE_OF = "query($id: ID!) { node(id: $id) { id ... on Affiliate { affiliateId totalCpaEarned } } }"


async def test_an_affiliate_token_reaches_only_what_its_root_fields_reach(secure: Clients) -> None:
    admin, me = secure.headers("admin"), secure.headers("affiliate", AFFILIATE)
    # Affiliates: itself and its downline; uplines, siblings and unknown ids are null, no error.
    for target, seen in ((AFFILIATE, True), (CHILD, True), (GRANDCHILD, True), (ROOT, False),
                         (SIBLING, False), (999999, False)):
        direct = (await secure.data(me, "query($id: ID!) { affiliate(id: $id) { id } }",
                                    {"id": str(target)}))["affiliate"]
        node = (await secure.data(me, NODE_OF, {"id": global_id("Affiliate", target)}))["node"]
        assert (node is not None) == (direct is not None) == seen, target
    # What the downline policy hides stays hidden through node.
    child = (await secure.data(me, NODE_OF, {"id": global_id("Affiliate", CHILD)}))["node"]
    assert child["totalCpaEarned"] is None
    # Statements: its own only (money is personal), as statementsConnection.
    listed = (await secure.data(admin, '{ statementsConnection(month: "2025-03-01", first: 100) '
                                       '{ nodes { id affiliateId } } }'))["statementsConnection"]["nodes"]
    assert listed
    mine = [s for s in listed if s["affiliateId"] == str(AFFILIATE)]
    for s in listed:
        got = (await secure.data(me, "query($id: ID!) { node(id: $id) { id } }", {"id": s["id"]}))["node"]
        assert (got is not None) == (s in mine), s
    # Referrals and validations of the root (an upline) are out of reach; its own are in.
    root_nodes = (await secure.data(admin, '{ affiliate(id: "300") { referrals(first: 5) { nodes { id } } '
                                           'cpaValidations(first: 5) { nodes { id } } '
                                           'transactions(first: 5) { nodes { id } } } }'))["affiliate"]
    foreign = [n["id"] for key in ("referrals", "cpaValidations", "transactions") for n in root_nodes[key]["nodes"]]
    assert len(foreign) == 15
    found = (await secure.data(me, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": foreign}))["nodes"]
    assert found == [None] * 15
    own = (await secure.data(me, '{ me { referrals(first: 5) { nodes { id cpaAmount } } } }'))["me"]["referrals"]["nodes"]
    again = (await secure.data(me, "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Referral { cpaAmount } } }",
                               {"ids": [r["id"] for r in own]}))["nodes"]
    assert again == own and own


async def test_a_downlines_referrals_beyond_the_viewers_level_5_are_null(secure: Clients) -> None:
    admin, me = secure.headers("admin"), secure.headers("affiliate", AFFILIATE)
    # CHILD is at AFFILIATE's level 1: of CHILD's network, AFFILIATE sees levels 1..4.
    query = 'query($id: ID!) { affiliate(id: $id) { referrals(first: 100) { nodes { id level } } } }'
    every = (await secure.data(admin, query, {"id": str(CHILD)}))["affiliate"]["referrals"]["nodes"]
    shown = (await secure.data(me, query, {"id": str(CHILD)}))["affiliate"]["referrals"]["nodes"]
    assert {n["id"] for n in shown} == {n["id"] for n in every if n["level"] <= 4}
    got = (await secure.data(me, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
                             {"ids": [n["id"] for n in every]}))["nodes"]
    assert [g["id"] if g else None for g in got] == [n["id"] if n["level"] <= 4 else None for n in every]


async def test_lookups_are_one_statement_per_type(api: Api) -> None:
    data = await api.data('{ affiliates(first: 4) { nodes { id } } affiliate(id: "300") { '
                          'referrals(first: 4) { nodes { id } } cpaValidations(first: 4) { nodes { id } } '
                          'transactions(first: 4) { nodes { id } } } }')
    ids = [n["id"] for n in data["affiliates"]["nodes"]] + [
        n["id"] for key in ("referrals", "cpaValidations", "transactions") for n in data["affiliate"][key]["nodes"]]
    assert len(ids) == 16
    query = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
    await api.data(query, {"ids": ids})  # warm
    with api.queries() as seen:
        assert [n["id"] for n in (await api.data(query, {"ids": ids}))["nodes"]] == ids
    assert len(seen) == 4, "\n".join(seen)  # affiliates, referrals, validations, transactions
    # Several node fields of one type in one document: one statement too.
    aliases = " ".join(f'n{i}: node(id: "{i_d}") {{ id }}' for i, i_d in enumerate(ids[4:8]))
    await api.data(f"{{ {aliases} }}")
    with api.queries() as seen:
        await api.data(f"{{ {aliases} }}")
    assert len(seen) == 1, "\n".join(seen)
