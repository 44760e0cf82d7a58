"""Referrals, CPA validations and transactions: every page to the end equals the table."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from tests.support.deployment import Api, Deployment, rows


async def walk(api: Api, field: str, args: str, node: str, page: int, affiliate: int = 300) -> tuple[list, int]:
    """Every node of a connection of one affiliate, page by page; and its totalCount."""
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        conn = (await api.data(
            f"query($id: ID!, $after: String) {{ affiliate(id: $id) {{ {field}(first: {page}, after: $after"
            f"{args}) {{ totalCount edges {{ cursor node {{ {node} }} }} "
            f"pageInfo {{ hasNextPage hasPreviousPage endCursor }} }} }} }}",
            {"id": affiliate, "after": after},
        ))["affiliate"][field]
        assert conn["pageInfo"]["hasPreviousPage"] == (after is not None)
        nodes += [e["node"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes, conn["totalCount"]
        after = conn["pageInfo"]["endCursor"]


REFERRAL = "referredUserId level referralDate status validationDate totalDeposits totalBets cpaAmount"


async def test_referrals_every_page(api: Api, deployment: Deployment) -> None:
    table = await rows(deployment.robust_url, "SELECT * FROM affiliate_referrals WHERE referrer_id = 300 "
                                          "ORDER BY referral_date DESC, referred_id")
    nodes, total = await walk(api, "referrals", "", REFERRAL, 20)
    assert total == len(table) == len(nodes) == 60  # 361 is at level 6
    for node, row in zip(nodes, table, strict=True):
        assert int(node["referredUserId"]) == row["referred_id"]
        assert node["level"] == row["mlm_level"]
        assert node["referralDate"] == row["referral_date"].isoformat()
        assert node["status"] == row["status"].upper()
        assert node["validationDate"] == (row["validation_date"].isoformat() if row["validation_date"] else None)
        assert (D(node["totalDeposits"]), D(node["totalBets"]), D(node["cpaAmount"])) == (
            row["total_deposits"], row["total_bets"], row["cpa_amount"])


async def test_referral_filters_and_counts(api: Api, deployment: Deployment) -> None:
    level1, total1 = await walk(api, "referrals", ", level: 1", "referredUserId level", 7)
    assert total1 == len(level1) == 25 and {n["level"] for n in level1} == {1}
    validated, total_v = await walk(api, "referrals", ", status: VALIDATED", "referredUserId status", 10)
    expected = await rows(deployment.robust_url, "SELECT count(*) FROM affiliate_referrals "
                                             "WHERE referrer_id = 300 AND status = 'validated'")
    assert total_v == len(validated) == expected[0][0] > 0
    both, total_b = await walk(api, "referrals", ", level: 2, status: PENDING", "referredUserId level status", 100)
    assert total_b == len(both) and all(n["level"] == 2 and n["status"] == "PENDING" for n in both)


VALIDATION = "id: validationId affiliateId referredUserId cpaLevel cpaAmount cpaStatus validationDate userDeposits userBets daysActive"


async def test_cpa_validations_every_page(api: Api, deployment: Deployment) -> None:
    table = await rows(deployment.robust_url, "SELECT * FROM affiliate_cpa_validations WHERE affiliate_id = 300 "
                                          "ORDER BY validation_date DESC, id DESC")
    nodes, total = await walk(api, "cpaValidations", "", VALIDATION, 6)
    assert total == len(nodes) == len(table) > 6
    for node, row in zip(nodes, table, strict=True):
        assert int(node["id"]) == row["id"] and int(node["referredUserId"]) == row["referred_user_id"]
        assert (node["cpaLevel"], D(node["cpaAmount"]), node["cpaStatus"]) == (
            row["cpa_level"], row["cpa_amount"], row["cpa_status"].upper())
        assert node["validationDate"] == row["validation_date"].isoformat()
        assert (D(node["userDeposits"]), D(node["userBets"]), node["daysActive"]) == (
            row["user_deposits"], row["user_bets"], row["days_active"])
    level2, _ = await walk(api, "cpaValidations", ", level: 2", "cpaLevel cpaAmount", 100)
    assert {(n["cpaLevel"], n["cpaAmount"]) for n in level2} == {(2, "20.00")}


async def test_example_validation(api: Api) -> None:
    nodes, total = await walk(api, "cpaValidations", "", VALIDATION + " affiliate { name }", 5, affiliate=101)
    assert total == 1
    assert nodes[0]["validationDate"] == "2025-03-04T02:30:00+00:00"
    assert (nodes[0]["cpaAmount"], nodes[0]["userBets"], nodes[0]["affiliate"]) == ("50.00", "110.00", {"name": "Ana"})


TRANSACTION = "id: transactionId userId level type amount transactionDate"


async def test_transactions_every_page(api: Api, deployment: Deployment) -> None:
    table = await rows(deployment.robust_url, "SELECT * FROM affiliate_financial_transactions "
                                          "WHERE affiliate_id = 300 ORDER BY transaction_date DESC, id DESC")
    nodes, total = await walk(api, "transactions", "", TRANSACTION, 100)
    assert total == len(nodes) == len(table) > 100
    for node, row in zip(nodes, table, strict=True):
        assert int(node["id"]) == row["id"] and node["level"] == row["mlm_level"]
        assert (node["type"], D(node["amount"])) == (row["transaction_type"].upper(), row["amount"])
        assert node["transactionDate"] == row["transaction_date"].isoformat()


async def test_transaction_filters(api: Api, deployment: Deployment) -> None:
    args = ', type: DEPOSIT, level: 1, from: "2025-03-10T00:00:00-03:00", to: "2025-03-20T00:00:00Z"'
    nodes, total = await walk(api, "transactions", args, TRANSACTION, 4)
    expected = await rows(deployment.robust_url, """
        SELECT id FROM affiliate_financial_transactions WHERE affiliate_id = 300 AND transaction_type = 'deposit'
        AND mlm_level = 1 AND transaction_date >= '2025-03-10T03:00Z' AND transaction_date < '2025-03-20Z'
        ORDER BY transaction_date DESC, id DESC""")
    assert [int(n["id"]) for n in nodes] == [r[0] for r in expected] and total == len(expected) > 4
    # A DateTime without an offset is read in the business time zone (America/Sao_Paulo).
    naive, _ = await walk(api, "transactions", args.replace("-03:00", ""), "id: transactionId", 100)
    assert [int(n["id"]) for n in naive] == [r[0] for r in expected]


async def test_referred_affiliate_and_sync_status(api: Api, deployment: Deployment) -> None:
    data = await api.data('{ affiliate(id: 101) { referrals(level: 2) { nodes { referredUserId referredAffiliate { id: affiliateId } } } } '
                          'syncStatus { dataAsOf runsInProgress { id: runId } lastRun { status mode } '
                          'lastSuccessfulRun { id: runId sourceAsOf finishedAt } } }')
    assert data["affiliate"]["referrals"]["nodes"] == [{"referredUserId": "103", "referredAffiliate": None}]
    run = (await rows(deployment.robust_url, "SELECT * FROM etl.runs WHERE status = 'success'"))[0]
    sync = data["syncStatus"]
    assert sync["runsInProgress"] == [] and sync["lastRun"]["status"] == "success"
    assert sync["lastRun"]["mode"] in {"incremental", "full"}  # the first cycle may be a full load
    assert sync["dataAsOf"] == run["source_as_of"].isoformat() == sync["lastSuccessfulRun"]["sourceAsOf"]
    assert sync["lastSuccessfulRun"]["id"] == str(run["id"])
