"""The lists that became connections (statements, the audit log, a simulation's affiliates):
walked forward page by page they equal the old list fields (which still answer, deprecated),
totalCount equals the count, cursors are opaque, and the count is made only when asked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from commissions import service
from tests.support.deployment import Api
from tests.support.program import Program

Data = Callable[..., Awaitable[dict[str, Any]]]


async def walk(data: Data, query: str, field: list[str], page: int, variables: dict[str, Any]
               ) -> tuple[list[dict[str, Any]], int]:
    """Every node of a connection, ``page`` at a time, with its totalCount."""
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        conn: Any = await data(query, {**variables, "first": page, "after": after})
        for key in field:
            conn = conn[key]
        assert conn["pageInfo"]["hasPreviousPage"] == (after is not None)
        assert [e["node"] for e in conn["edges"]] == conn["nodes"] and len(conn["nodes"]) <= page
        if conn["edges"]:
            assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        nodes += conn["nodes"]
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes, conn["totalCount"]
        after = conn["pageInfo"]["endCursor"]


PAGE = "edges { cursor node { %s } } nodes { %s } pageInfo { hasNextPage hasPreviousPage endCursor } totalCount"
STATEMENT = "statementId affiliateId month status cpa rev payable"
STATEMENTS = ("query($m: Date!, $first: Int, $after: String) { statementsConnection(month: $m, first: $first, "
              "after: $after) { " + PAGE % (STATEMENT, STATEMENT) + " } }")


@pytest.mark.parametrize("month", ["2025-03-01", "2025-04-01"])
async def test_statements_every_page_equals_the_old_list(api: Api, month: str) -> None:
    old = (await api.data("query($m: Date!) { statements(month: $m, first: 100) { " + STATEMENT + " } }",
                          {"m": month}))["statements"]
    assert 6 <= len(old) < 100
    for size in (1, 4, 100):
        nodes, total = await walk(api.data, STATEMENTS, ["statementsConnection"], size, {"m": month})
        assert nodes == old and total == len(old)
    # The old list's paging by affiliate id still answers as before.
    second = (await api.data("query($m: Date!, $a: ID) { statements(month: $m, first: 2, after: $a) { "
                             + STATEMENT + " } }", {"m": month, "a": old[1]["affiliateId"]}))["statements"]
    assert second == old[2:4]
    # A cursor is opaque, of this list: another list's is refused.
    referrals = (await api.data('{ affiliate(id: "300") { referrals(first: 1) { pageInfo { endCursor } } } }'))
    error = await api.error(STATEMENTS, {"m": month, "first": 1,
                                         "after": referrals["affiliate"]["referrals"]["pageInfo"]["endCursor"]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    too_big = await api.error(STATEMENTS, {"m": month, "first": 101, "after": None})
    assert "first must be between 0 and 100" in too_big["message"]


async def test_statements_are_counted_only_when_asked(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # An open month's statements are settled live: counting settles the whole month again.
    settled: list[object] = []
    real = service.month_statements

    def counting(*args: Any, **kwargs: Any) -> Any:
        settled.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "month_statements", counting)
    query = 'query($c: Boolean!) { statementsConnection(month: "2025-03-01", first: 2) { nodes { statementId } ' \
            "totalCount @include(if: $c) } }"
    without = (await api.data(query, {"c": False}))["statementsConnection"]
    assert settled == [] and "totalCount" not in without and len(without["nodes"]) == 2
    counted = (await api.data(query, {"c": True}))["statementsConnection"]
    assert len(settled) == 1 and counted["totalCount"] >= 6


AUDIT = "auditEntryId action entity entityId actor"
AUDIT_PAGE = ("query($first: Int!, $after: String, $e: String) { commissionAuditLogConnection(first: $first, "
              "after: $after, entity: $e) { " + PAGE % (AUDIT, AUDIT) + " } }")


async def test_the_audit_log_every_page_and_counted_only_when_asked(program: Program) -> None:
    create = """mutation($n: String!) { createCommissionPlan(name: $n, terms: {cpaByLevel: ["1","1","1","1","1"],
      revShareByLevel: ["0.1","0","0","0","0"]}) { planId } }"""
    for n in range(5):
        await program.data(create, {"n": f"Page {n}"})
    old = (await program.data("{ commissionAuditLog(first: 500) { " + AUDIT + " } }"))["commissionAuditLog"]
    assert len(old) >= 5
    for size in (1, 2, 500):
        nodes, total = await walk(program.data, AUDIT_PAGE, ["commissionAuditLogConnection"], size, {"e": None})
        assert nodes == old and total == len(old)
    plans = [e for e in old if e["entity"] == "commission_plan"]
    nodes, total = await walk(program.data, AUDIT_PAGE, ["commissionAuditLogConnection"], 2,
                              {"e": "commission_plan"})
    assert nodes == plans and total == len(plans) >= 5
    # The count is a statement of its own on the API's reader, sent only for totalCount.
    query = "query($c: Boolean!) { commissionAuditLogConnection(first: 2) { nodes { auditEntryId } " \
            "totalCount @include(if: $c) } }"
    for asked in (False, True):
        with program.api.queries() as seen:
            await program.data(query, {"c": asked})
        assert sum("count(" in s.lower() for s in seen) == (1 if asked else 0), seen


SIMULATED = "affiliateId difference actual { total } simulated { total }"
SIMULATION = ("query($t: CommissionPlanTermsInput!, $first: Int, $after: String) { simulateCommissionPlan(terms: $t, "
              'month: "2025-03-01") { affiliateCount affiliatesConnection(first: $first, after: $after) { '
              + PAGE % (SIMULATED, SIMULATED) + " } } }")
TERMS = {"cpaByLevel": ["60", "20", "10", "5", "5"], "revShareByLevel": ["0.3", "0.1", "0.05", "0.03", "0.02"]}


async def test_the_simulation_every_page_equals_the_old_list(api: Api) -> None:
    old = (await api.data("query($t: CommissionPlanTermsInput!) { simulateCommissionPlan(terms: $t, "
                          'month: "2025-03-01", first: 1000) { affiliateCount affiliates { ' + SIMULATED + " } } }",
                          {"t": TERMS}))["simulateCommissionPlan"]
    assert len(old["affiliates"]) == old["affiliateCount"] >= 3
    for size in (1, 2, 1000):
        nodes, total = await walk(api.data, SIMULATION, ["simulateCommissionPlan", "affiliatesConnection"], size,
                                  {"t": TERMS})
        assert nodes == old["affiliates"] and total == old["affiliateCount"]
    # The connection with its defaults is the root's own page (first 100, from the start).
    query = ("query($t: CommissionPlanTermsInput!) { simulateCommissionPlan(terms: $t, month: \"2025-03-01\") { "
             "affiliates { affiliateId } affiliatesConnection { nodes { affiliateId } totalCount } } }")
    got = (await api.data(query, {"t": TERMS}))["simulateCommissionPlan"]
    assert got["affiliates"] == got["affiliatesConnection"]["nodes"]
