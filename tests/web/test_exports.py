"""CSV exports (GET /api/v1/exports/{report}): the same numbers as GraphQL, scoped per role,
both separator/decimal options, bad input as JSON errors, and 1M rows in constant memory."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from tests.support.deployment import Api, Deployment, serve, token
from tests.support.program import Program

ROOT, AFFILIATE, CHILD, GRANDCHILD, SIBLING = 300, 301, 326, 341, 302


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class Exports:
    def __init__(self, served: Api, deployment: Deployment) -> None:
        self.api, self.deployment = served, deployment

    def headers(self, role: str, affiliate_id: int | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token(self.deployment.settings, role, affiliate_id)}"}

    async def get(self, report: str, role: str = "admin", me: int | None = None, **params: Any) -> Any:
        """``me``: the token's affiliate; ``params``: the query string."""
        return await self.api.client.get(f"/api/v1/exports/{report}", params=params,
                                         headers=self.headers(role, me))

    async def csv(self, report: str, role: str = "admin", me: int | None = None,
                  **params: Any) -> list[dict[str, str]]:
        response = await self.get(report, role, me, **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert re.fullmatch(r'attachment; filename="fature-[\w-]+\.csv"',
                            response.headers["content-disposition"])
        sep = {";": ";", "tab": "\t"}.get(params.get("sep", ","), ",")
        return list(csv.DictReader(io.StringIO(response.text), delimiter=sep))

    async def gql(self, query: str, variables: dict[str, Any] | None = None, role: str = "admin",
                  affiliate_id: int | None = None) -> dict[str, Any]:
        response = await self.api.client.post("/graphql", json={"query": query, "variables": variables or {}},
                                              headers=self.headers(role, affiliate_id))
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    async def pages(self, query: str, path: list[str], variables: dict[str, Any], role: str = "admin",
                    affiliate_id: int | None = None) -> list[dict[str, Any]]:
        """Every node of a connection, page by page (first: 100)."""
        nodes: list[dict[str, Any]] = []
        after = None
        while True:
            data: Any = await self.gql(query, {**variables, "after": after}, role, affiliate_id)
            for key in path:
                data = data[key]
            nodes += [e["node"] for e in data["edges"]]
            if not data["pageInfo"]["hasNextPage"]:
                return nodes
            after = data["pageInfo"]["endCursor"]


@pytest.fixture(scope="session")
async def exports(deployment: Deployment) -> AsyncIterator[Exports]:
    async with serve(deployment, role=None) as served:
        yield Exports(served, deployment)


def same(csv_value: str, gql_value: Any) -> bool:
    if gql_value is None:
        return csv_value == ""
    if isinstance(gql_value, bool):
        return csv_value == str(gql_value).lower()
    if isinstance(gql_value, str) and re.fullmatch(r"-?\d+\.\d+", gql_value):
        return Decimal(csv_value) == Decimal(gql_value) and csv_value == gql_value
    return csv_value == str(gql_value)


def assert_rows(rows: list[dict[str, str]], nodes: list[dict[str, Any]], mapping: dict[str, str]) -> None:
    assert len(rows) == len(nodes) and nodes
    for row, node in zip(rows, nodes, strict=True):
        for column, field in mapping.items():
            assert same(row[column], node[field]), (column, row[column], node[field])


# ------------------------------------------------------------------ equal to GraphQL
REFERRALS = """query R($id: ID!, $after: String, $level: Int) { affiliate(id: $id) {
  referrals(first: 25, after: $after, level: $level) { pageInfo { hasNextPage endCursor }
    edges { node { referredUserId level referralDate status validationDate totalDeposits totalBets
                   cpaAmount } } } } }"""
REFERRAL_MAP = {"referred_id": "referredUserId", "mlm_level": "level", "referral_date": "referralDate",
                "status": "status", "validation_date": "validationDate", "total_deposits": "totalDeposits",
                "total_bets": "totalBets", "cpa_amount": "cpaAmount"}


async def test_referrals_equal_graphql(exports: Exports) -> None:
    rows = await exports.csv("referrals", affiliate_id=ROOT)
    nodes = await exports.pages(REFERRALS, ["affiliate", "referrals"], {"id": ROOT})
    assert len(nodes) > 50  # several GraphQL pages
    assert_rows(rows, nodes, REFERRAL_MAP)
    assert {r["referrer_id"] for r in rows} == {str(ROOT)}
    level3 = await exports.csv("referrals", affiliate_id=ROOT, level=3)
    assert_rows(level3, await exports.pages(REFERRALS, ["affiliate", "referrals"], {"id": ROOT, "level": 3}),
                REFERRAL_MAP)
    validated = await exports.csv("referrals", affiliate_id=ROOT, status="validated")
    assert validated and {r["status"] for r in validated} == {"VALIDATED"}
    assert len(validated) == sum(n["status"] == "VALIDATED" for n in nodes)


SUMMARIES = """query S($id: ID!, $period: PeriodType!, $from: Date, $to: Date) { affiliate(id: $id) {
  summaries(period: $period, from: $from, to: $to) { periodType periodStart newReferrals validatedReferrals
    totalDeposits totalBets totalGgr cpaEarned revEarned levels { level newReferrals deposits bets ggr cpa rev }
  } } }"""


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly", "yearly"])
async def test_summaries_equal_graphql(exports: Exports, period: str) -> None:
    rows = await exports.csv("summaries", affiliate_id=ROOT, period=period)
    nodes = (await exports.gql(SUMMARIES, {"id": ROOT, "period": period.upper()}))["affiliate"]["summaries"]
    assert_rows(rows, nodes, {c: camel(c) for c in [
        "period_type", "period_start", "new_referrals", "validated_referrals", "total_deposits",
        "total_bets", "total_ggr", "cpa_earned", "rev_earned"]})
    for row, node in zip(rows, nodes, strict=True):
        for level in node["levels"]:
            n = level["level"]
            for field in ("deposits", "bets", "ggr", "cpa", "rev"):
                assert row[f"level_{n}_{field}"] == level[field]
            assert row[f"level_{n}_new_referrals"] == str(level["newReferrals"])


async def test_summaries_range(exports: Exports) -> None:
    rows = await exports.csv("summaries", affiliate_id=ROOT, period="daily", **{"from": "2025-03-05",
                                                                                "to": "2025-03-10"})
    nodes = (await exports.gql(SUMMARIES, {"id": ROOT, "period": "DAILY", "from": "2025-03-05",
                                           "to": "2025-03-10"}))["affiliate"]["summaries"]
    assert [r["period_start"] for r in rows] == [n["periodStart"] for n in nodes]
    assert rows and all("2025-03-05" <= r["period_start"] <= "2025-03-10" for r in rows)


VALIDATIONS = """query V($id: ID!, $after: String) { affiliate(id: $id) {
  cpaValidations(first: 100, after: $after) { pageInfo { hasNextPage endCursor }
    edges { node { id: validationId affiliateId referredUserId validationDate cpaLevel cpaAmount cpaStatus
                   userDeposits userBets daysActive createdAt } } } } }"""
VALIDATION_MAP = {c: camel(c) for c in [
    "id", "affiliate_id", "referred_user_id", "validation_date", "cpa_level", "cpa_amount", "cpa_status",
    "user_deposits", "user_bets", "days_active", "created_at"]}


async def test_validations_equal_graphql(exports: Exports) -> None:
    rows = await exports.csv("validations", affiliate_id=ROOT)
    assert_rows(rows, await exports.pages(VALIDATIONS, ["affiliate", "cpaValidations"], {"id": ROOT}),
                VALIDATION_MAP)
    everyone = await exports.csv("validations")
    assert {r["id"] for r in rows} < {r["id"] for r in everyone}
    days = await exports.csv("validations", affiliate_id=ROOT, **{"from": "2025-03-10", "to": "2025-03-12"})
    assert days and len(days) < len(rows)
    assert all("2025-03-10" <= r["validation_date"][:10] <= "2025-03-13" for r in days)


RANKING = """query K($metric: RankingMetric!, $after: String) { ranking(metric: $metric, first: 100,
  after: $after) { pageInfo { hasNextPage endCursor } edges { node { id: affiliateId name email phone status rankCpa
  rankReferrals totalCpaEarned totalValidatedReferrals totalNetworkSize } } } }"""
RANKING_MAP = {"affiliate_id": "id", "name": "name", "email": "email", "phone": "phone", "status": "status",
               "rank_cpa": "rankCpa", "rank_referrals": "rankReferrals", "total_cpa_earned": "totalCpaEarned",
               "total_validated_referrals": "totalValidatedReferrals",
               "total_network_size": "totalNetworkSize"}


# An active affiliate of the tree (301, the scoping tests' affiliate, is inactive: it has no rank).
ACTIVE_AFFILIATE = 302


@pytest.mark.parametrize("role,affiliate_id", [("admin", None), ("analyst", None),
                                               ("affiliate", ACTIVE_AFFILIATE)])
@pytest.mark.parametrize("metric", ["cpa_earned", "validated_referrals"])
async def test_ranking_equal_graphql_per_role(exports: Exports, role: str, affiliate_id: int | None,
                                              metric: str) -> None:
    rows = await exports.csv("ranking", role, affiliate_id, metric=metric)
    nodes = await exports.pages(RANKING, ["ranking"], {"metric": metric.upper()}, role, affiliate_id)
    assert_rows(rows, nodes, RANKING_MAP)
    if role == "affiliate":  # the downline policy: an affiliate's ranking holds itself only
        assert [r["affiliate_id"] for r in rows] == [str(ACTIVE_AFFILIATE)]


async def test_ranking_masking_per_role(exports: Exports) -> None:
    admin = {r["affiliate_id"]: r for r in await exports.csv("ranking")}
    analyst = {r["affiliate_id"]: r for r in await exports.csv("ranking", "analyst")}
    mine = {r["affiliate_id"]: r for r in await exports.csv("ranking", "affiliate", AFFILIATE)}
    assert analyst.keys() == admin.keys()
    assert any("***" in r["email"] for r in analyst.values())
    assert all("***" not in r["email"] for r in admin.values())
    assert all(a["name"] == admin[i]["name"] for i, a in analyst.items())
    assert set(mine) < set(admin) and str(ROOT) not in mine and str(SIBLING) not in mine
    for i, row in mine.items():
        if i == str(AFFILIATE):
            assert row["email"] == admin[i]["email"] and row["name"] == admin[i]["name"]
        else:
            assert row["email"] == "" and row["phone"] == "" and row["name"].endswith("***")


STATEMENTS = """query T($m: Date!, $id: ID) { statements(month: $m, affiliateId: $id, first: 100) {
  id: statementId affiliateId month status planId planVersionId negativeCarryover minPayout cpaValidated cpaRejected cpa
  rev cpaAdjustments revAdjustments revSettlements carryoverIn revPayable carryoverOut heldIn payable heldOut closedAt
  approvedAt paidAt paymentReference } }"""
STATEMENT_MAP = {c: camel(c) for c in [
    "affiliate_id", "month", "status", "plan_id", "plan_version_id", "negative_carryover", "min_payout",
    "cpa_validated", "cpa_rejected", "cpa", "rev", "cpa_adjustments", "rev_adjustments", "rev_settlements",
    "carryover_in",
    "rev_payable", "carryover_out", "held_in", "payable", "held_out", "closed_at", "approved_at", "paid_at",
    "payment_reference"]}


async def test_open_statements_equal_graphql_and_scoped(exports: Exports) -> None:
    rows = await exports.csv("statements", month="2025-03")
    nodes = (await exports.gql(STATEMENTS, {"m": "2025-03-01"}))["statements"]
    assert len(nodes) < 100
    assert_rows(rows, nodes, STATEMENT_MAP)
    assert {r["status"] for r in rows} == {"OPEN"}
    # An affiliate: its own statement only; anyone else's (its downline's too) is 404.
    own = await exports.csv("statements", "affiliate", AFFILIATE, month="2025-03")
    assert [r["affiliate_id"] for r in own] == [str(AFFILIATE)]
    assert own == [r for r in rows if r["affiliate_id"] == str(AFFILIATE)]
    for other in (CHILD, ROOT):
        response = await exports.get("statements", "affiliate", AFFILIATE, month="2025-03", affiliate_id=other)
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    analyst = await exports.csv("statements", "analyst", month="2025-03", affiliate_id=CHILD)
    assert analyst == [r for r in rows if r["affiliate_id"] == str(CHILD)]
    future = await exports.get("statements", month="2999-01")
    assert future.status_code == 200 and future.text.count("\r\n") == 1  # the header alone


# ------------------------------------------------------------------ scoping
# The money columns of each report that the downline policy empties for a downline affiliate.
MONEY_COLUMNS = {
    "referrals": ("cpa_amount",),
    "summaries": ("cpa_earned", "rev_earned", *(f"level_{n}_{k}" for n in range(1, 6) for k in ("cpa", "rev"))),
    "validations": ("cpa_amount",),
}


@pytest.mark.parametrize("report", ["referrals", "summaries", "validations"])
async def test_affiliate_sees_itself_and_downline_only(exports: Exports, report: str) -> None:
    mine = await exports.get(report, "affiliate", AFFILIATE, affiliate_id=AFFILIATE)
    admin = await exports.get(report, affiliate_id=AFFILIATE)
    assert mine.status_code == 200 and mine.text == admin.text  # itself: everything
    # A downline affiliate at level L: its own levels 1..5-L only, and none of its money.
    for visible, depth in ((CHILD, 4), (GRANDCHILD, 3)):
        response = await exports.get(report, "affiliate", AFFILIATE, affiliate_id=visible)
        assert response.status_code == 200
        rows = list(csv.DictReader(io.StringIO(response.text)))
        everything = await exports.csv(report, affiliate_id=visible)
        for row in rows:
            assert all(row[c] == "" for c in MONEY_COLUMNS[report]), row
            level = row.get("mlm_level") or row.get("cpa_level")
            assert level is None or int(level) <= depth, row
        if report != "summaries":  # summaries are re-summed over the allowed levels
            allowed = [r for r in everything if int(r.get("mlm_level") or r.get("cpa_level") or 0) <= depth]
            assert len(rows) == len(allowed)
    for hidden in (ROOT, SIBLING, 999_999):
        response = await exports.get(report, "affiliate", AFFILIATE, affiliate_id=hidden)
        assert response.status_code == 404, (hidden, response.text)
        assert response.json() == {"error": {"code": "NOT_FOUND", "message": f"no affiliate with id {hidden}"}}
    unknown = await exports.get(report, affiliate_id=999_999)
    assert unknown.status_code == 404


async def test_validations_without_id_are_scoped(exports: Exports) -> None:
    everyone = await exports.csv("validations")
    mine = await exports.csv("validations", "affiliate", AFFILIATE)
    # An affiliate's own ledger only: its downline's validations are their earnings (money is personal).
    assert mine == [r for r in everyone if r["affiliate_id"] == str(AFFILIATE)]
    assert mine and len(mine) < len(everyone)


async def test_needs_a_token(exports: Exports) -> None:
    response = await exports.api.client.get("/api/v1/exports/ranking")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


# ------------------------------------------------------------------ options and bad input
async def test_separator_and_decimal_comma(exports: Exports) -> None:
    plain = await exports.get("summaries", affiliate_id=ROOT, period="monthly")
    semi = await exports.get("summaries", affiliate_id=ROOT, period="monthly", sep=";")
    brazil = await exports.get("summaries", affiliate_id=ROOT, period="monthly", sep=";", decimal="comma")
    assert plain.text.splitlines()[0].count(",") == semi.text.splitlines()[0].count(";") > 5
    assert semi.text == plain.text.replace(",", ";")  # no cell holds a comma here
    rows = list(csv.DictReader(io.StringIO(plain.text)))
    br = list(csv.DictReader(io.StringIO(brazil.text), delimiter=";"))
    assert len(br) == len(rows) and rows
    for row, row_br in zip(rows, br, strict=True):
        assert row_br["period_start"] == row["period_start"]  # dates keep their dashes
        assert row_br["new_referrals"] == row["new_referrals"]
        for column in ("total_deposits", "total_bets", "total_ggr", "cpa_earned", "rev_earned"):
            assert re.fullmatch(r"-?\d+,\d{2}", row_br[column]), row_br[column]
            assert Decimal(row_br[column].replace(",", ".")) == Decimal(row[column])
    tab = await exports.get("summaries", affiliate_id=ROOT, sep="tab", decimal="comma")
    assert tab.status_code == 200 and "\t" in tab.text.splitlines()[0]


@pytest.mark.parametrize("report,params,fragment", [
    ("summaries", {"affiliate_id": ROOT, "decimal": "comma"}, "decimal=comma needs sep=;"),
    ("summaries", {"affiliate_id": ROOT, "sep": ",", "decimal": "comma"}, "decimal=comma needs sep=;"),
    ("summaries", {"affiliate_id": ROOT, "sep": "|"}, "sep must be"),
    ("summaries", {"affiliate_id": ROOT, "decimal": "x"}, "decimal must be"),
    ("summaries", {"affiliate_id": ROOT, "period": "hourly"}, "period must be one of"),
    ("summaries", {"affiliate_id": ROOT, "from": "2025-13-01"}, "from must be a date"),
    ("summaries", {"affiliate_id": ROOT, "from": "2025-03-10", "to": "2025-03-01"}, "is after to"),
    ("summaries", {}, "affiliate_id is required"),
    ("referrals", {"affiliate_id": "abc"}, "affiliate_id must be a positive integer id"),
    ("referrals", {"affiliate_id": "-1"}, "affiliate_id must be a positive integer id"),
    ("referrals", {"affiliate_id": ROOT, "level": 6}, "level must be between 1 and 5"),
    ("referrals", {"affiliate_id": ROOT, "status": "paid"}, "status must be one of"),
    ("referrals", {"affiliate_id": ROOT, "first": 10}, "unknown parameter 'first'"),
    ("ranking", {"metric": "ggr"}, "metric must be one of cpa_earned|validated_referrals"),
    ("statements", {}, "month is required"),
    ("statements", {"month": "2025-3"}, "month must look like YYYY-MM"),
    ("statements", {"month": "2025-13"}, "month must look like YYYY-MM"),
    ("statements", {"month": "2025-03", "status": "late"}, "status must be one of"),
    ("validations", {"from": "yesterday"}, "from must be a date"),
    ("validations", {"from": "2025-03-10", "to": "2025-03-09"}, "must be before to"),
    ("summaries", {"affiliate_id": ROOT, "format": "pdf"}, "format must be csv or xlsx, got 'pdf'"),
    ("summaries", {"affiliate_id": ROOT, "format": "xlsx", "sep": ";"}, "sep applies to format=csv only"),
    ("summaries", {"affiliate_id": ROOT, "format": "xlsx", "decimal": "comma"},
     "decimal applies to format=csv only"),
    ("statements", {"month": "2025-13", "format": "xlsx"}, "month must look like YYYY-MM"),
])
async def test_bad_parameters_are_400(exports: Exports, report: str, params: dict[str, Any],
                                      fragment: str) -> None:
    response = await exports.get(report, **params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT" and fragment in error["message"], error


async def test_unknown_report_is_404(exports: Exports) -> None:
    response = await exports.get("passwords")
    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


# ------------------------------------------------------------------ closed months (own databases)
CLOSE = "mutation C($m: Date!) { closeMonth(month: $m) { months statements lines } }"


async def test_closed_statements_equal_graphql(program: Program) -> None:
    await program.data(CLOSE, {"m": "2025-03-01"})
    response = await program.api.client.get("/api/v1/exports/statements", params={"month": "2025-03"})
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    nodes = (await program.data(STATEMENTS, {"m": "2025-03-01"}))["statements"]
    assert_rows(rows, nodes, STATEMENT_MAP)
    assert [r["affiliate_id"] for r in rows] == ["1", "2"] and rows[0]["cpa"] == "350.00"
    assert {r["status"] for r in rows} <= {"CLOSED", "ON_HOLD"} and rows[0]["closed_at"]
    on_hold = await program.api.client.get("/api/v1/exports/statements",
                                           params={"month": "2025-03", "status": "on_hold"})
    assert [r["affiliate_id"] for r in csv.DictReader(io.StringIO(on_hold.text))] == [
        n["affiliateId"] for n in nodes if n["status"] == "ON_HOLD"]
    # the open month after it, from the live tables
    april = await program.api.client.get("/api/v1/exports/statements",
                                         params={"month": "2025-04", "sep": ";", "decimal": "comma"})
    april_nodes = (await program.data(STATEMENTS, {"m": "2025-04-01"}))["statements"]
    april_rows = list(csv.DictReader(io.StringIO(april.text), delimiter=";"))
    assert len(april_rows) == len(april_nodes)
    for row, node in zip(april_rows, april_nodes, strict=True):
        assert Decimal(row["rev"].replace(",", ".")) == Decimal(node["rev"])
        assert Decimal(row["payable"].replace(",", ".")) == Decimal(node["payable"])


# ------------------------------------------------------------------ a million rows
def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _many_referrals(program: Program, n: int) -> Decimal:
    """``n`` more level-1..5 referrals of affiliate 1; returns the sum of their deposits."""
    conn = await asyncpg.connect(program.deployment.robust_url)
    try:
        await conn.execute(
            """INSERT INTO affiliate_referrals (referrer_id, referred_id, mlm_level, referral_date, status,
                 validation_date, total_deposits, total_bets, cpa_amount)
               SELECT 1, 10000000 + g, 1 + g % 5, timestamptz '2024-01-01 00:00Z' + g * interval '7 seconds',
                      CASE WHEN g % 3 = 0 THEN 'validated' ELSE 'pending' END,
                      CASE WHEN g % 3 = 0 THEN timestamptz '2024-06-01 00:00Z' END,
                      (g % 100000) / 100.0, (g % 700000) / 100.0, CASE WHEN g % 3 = 0 THEN 50 ELSE 0 END
               FROM generate_series(1, $1) AS g""", n)
        await conn.execute("ANALYZE affiliate_referrals")
        return await conn.fetchval("SELECT sum(total_deposits) FROM affiliate_referrals WHERE referrer_id = 1")
    finally:
        await conn.close()


async def _get_streamed(program: Program, path: str, query: bytes,
                        on_body: Callable[[bytes], None]) -> dict[str, Any]:
    """GET through the ASGI app itself, each body chunk to ``on_body`` as it is sent; returns
    the status, the bytes and chunks sent, the process's peak growth in memory, the time."""
    app = program.api.app
    headers = [(b"host", b"test"),
               (b"authorization", f"Bearer {token(program.deployment.settings, 'admin')}".encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query, "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("test", 80),
    }
    requested = asyncio.Event()
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not requested.is_set():
            requested.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    state: dict[str, Any] = {"status": None, "bytes": 0, "chunks": 0, "peak": 0}
    baseline = _rss()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
            return
        body = message.get("body", b"")
        state["bytes"] += len(body)
        state["chunks"] += 1
        on_body(body)
        state["peak"] = max(state["peak"], _rss() - baseline)

    started = time.perf_counter()
    await app(scope, receive, send)
    state["elapsed"] = time.perf_counter() - started
    return state


@pytest.mark.slow
async def test_million_rows_in_constant_memory(program: Program) -> None:
    n = 1_000_000
    expected_deposits = await _many_referrals(program, n)
    lines: dict[str, Any] = {"lines": 0, "deposits": Decimal(0), "tail": b""}

    def on_body(chunk: bytes) -> None:
        body = lines["tail"] + chunk
        parts = body.split(b"\r\n")
        lines["tail"] = parts.pop()
        lines["lines"] += len(parts)
        for line in parts:
            cells = line.split(b";")
            if cells[0] != b"referrer_id":
                lines["deposits"] += Decimal(cells[6].replace(b",", b".").decode())

    state = await _get_streamed(program, "/api/v1/exports/referrals", b"affiliate_id=1&sep=%3B&decimal=comma",
                                on_body)

    assert state["status"] == 200
    assert lines["tail"] == b""
    assert lines["lines"] == 1 + n + 8  # the header, the generated rows, the program's 8 referrals
    assert lines["deposits"] == expected_deposits  # exact decimals end to end
    assert state["chunks"] > 100  # streamed, not one body
    assert state["bytes"] > 60_000_000
    # Constant memory: the process grew by a small fraction of what it sent.
    assert state["peak"] < min(state["bytes"] // 4, 32_000_000), (state["peak"], state["bytes"])
    assert state["elapsed"] < 60, state["elapsed"]


@pytest.mark.slow
async def test_xlsx_of_many_rows_in_constant_memory(program: Program, tmp_path: Any) -> None:
    """The workbook is written to disk row by row and streamed back in chunks: the process
    grows by a small fraction of the sheet, and every amount arrives exact."""
    import zipfile

    n = 60_000
    expected_deposits = await _many_referrals(program, n)
    # a first, smaller workbook: the writer's thread and its working set of one chunk exist
    warm_up = await _get_streamed(program, "/api/v1/exports/referrals", b"affiliate_id=1&level=1&format=xlsx",
                                  lambda chunk: None)
    assert warm_up["status"] == 200
    received = tmp_path / "referrals.xlsx"
    with received.open("wb") as sink:
        state = await _get_streamed(program, "/api/v1/exports/referrals", b"affiliate_id=1&format=xlsx",
                                    sink.write)
    assert state["status"] == 200 and state["bytes"] == received.stat().st_size
    assert state["chunks"] >= 8  # streamed in chunks, not one body

    with zipfile.ZipFile(received) as book:
        xml = book.read("xl/worksheets/sheet1.xml")
    amounts = re.findall(rb'<c r="G\d+"[^>]*><v>([^<]*)</v></c>', xml)  # total_deposits, G1 the header
    rows, deposits = len(amounts), sum((Decimal(v.decode()) for v in amounts), Decimal(0))
    sheet_size = len(xml)
    assert rows == n + 8 and deposits == expected_deposits  # every amount as its exact decimal text
    # Constant memory: beyond what one chunk needs (the first workbook), the process grew by a
    # small fraction of the sheet it wrote.
    assert sheet_size > 20_000_000
    assert state["peak"] < sheet_size // 4, (state["peak"], sheet_size)


# ------------------------------------------------------------------ xlsx
def xlsx_rows(content: bytes) -> list[list[Any]]:
    """Every row of every worksheet (the header of each after the first dropped)."""
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    rows: list[list[Any]] = []
    for n, sheet in enumerate(book.worksheets):
        for i, row in enumerate(sheet.iter_rows()):
            if n and not i:
                continue
            rows.append([(c.value, c.number_format) for c in row])
    return rows


def same_cell(csv_value: str, xlsx: tuple[Any, str]) -> bool:
    from datetime import datetime

    value, number_format = xlsx
    if value is None:
        return csv_value == ""
    if isinstance(value, bool):
        return csv_value == str(value).lower()
    if isinstance(value, datetime):  # a date cell
        return number_format == "yyyy-mm-dd" and value.time() == datetime.min.time() \
            and value.date().isoformat() == csv_value
    if isinstance(value, int | float):
        if "." in csv_value:  # money: a number with two decimals on display
            return number_format == "#,##0.00" and Decimal(repr(value)) == Decimal(csv_value)
        return Decimal(repr(value)) == Decimal(csv_value)
    return value == csv_value


async def assert_xlsx_equals_csv(exports: Exports, report: str, role: str, me: int | None,
                                 **params: Any) -> int:
    expected = await exports.get(report, role, me, **params)
    response = await exports.get(report, role, me, format="xlsx", **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    assert re.fullmatch(r'attachment; filename="fature-[\w-]+\.xlsx"', response.headers["content-disposition"])
    assert int(response.headers["content-length"]) == len(response.content)
    csv_rows = list(csv.reader(io.StringIO(expected.text)))
    rows = xlsx_rows(response.content)
    assert [v for v, _ in rows[0]] == csv_rows[0]  # the header
    assert len(rows) == len(csv_rows)
    for line, (row, csv_row) in enumerate(zip(rows[1:], csv_rows[1:], strict=True)):
        assert len(row) == len(csv_row)
        for column, csv_value, cell in zip(csv_rows[0], csv_row, row, strict=True):
            assert same_cell(csv_value, cell), (line, column, csv_value, cell)
    return len(rows) - 1


@pytest.mark.parametrize("report,params", [
    ("statements", {"month": "2025-03"}),
    ("statements", {"month": "2025-04"}),
    ("ranking", {"metric": "cpa_earned"}),
    ("referrals", {"affiliate_id": AFFILIATE}),
    ("summaries", {"affiliate_id": AFFILIATE, "period": "daily"}),
    ("validations", {}),
])
@pytest.mark.parametrize("role,me", [("admin", None), ("analyst", None), ("affiliate", AFFILIATE)])
async def test_xlsx_equals_csv_per_role(exports: Exports, report: str, params: dict[str, Any], role: str,
                                        me: int | None) -> None:
    if report == "ranking" and role == "affiliate":
        me = ACTIVE_AFFILIATE  # an inactive affiliate has no rank: its ranking is empty
    assert await assert_xlsx_equals_csv(exports, report, role, me, **params) > 0


async def test_xlsx_is_scoped_like_csv(exports: Exports) -> None:
    mine = xlsx_rows((await exports.get("statements", "affiliate", AFFILIATE, month="2025-03",
                                        format="xlsx")).content)
    assert [row[0][0] for row in mine[1:]] == [AFFILIATE]
    for other in (CHILD, ROOT):
        response = await exports.get("statements", "affiliate", AFFILIATE, month="2025-03",
                                     affiliate_id=other, format="xlsx")
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    hidden = await exports.get("referrals", "affiliate", AFFILIATE, affiliate_id=ROOT, format="xlsx")
    assert hidden.status_code == 404
    analyst = xlsx_rows((await exports.get("ranking", "analyst", format="xlsx")).content)
    email = [v for v, _ in analyst[0]].index("email")
    assert any("***" in (row[email][0] or "") for row in analyst[1:])
    anonymous = await exports.api.client.get("/api/v1/exports/ranking", params={"format": "xlsx"})
    assert anonymous.status_code == 401


async def test_xlsx_money_is_the_exact_decimal_text(exports: Exports) -> None:
    """The sheet XML holds each amount's own decimal text: no float ever touched it."""
    import zipfile

    text = (await exports.get("summaries", affiliate_id=ROOT, period="daily")).text
    csv_rows = list(csv.reader(io.StringIO(text)))
    content = (await exports.get("summaries", affiliate_id=ROOT, period="daily", format="xlsx")).content
    xml = zipfile.ZipFile(io.BytesIO(content)).read("xl/worksheets/sheet1.xml").decode()
    numbers = {(int(r), col): v for col, r, v in re.findall(r'<c r="([A-Z]+)(\d+)"[^>]*><v>([^<]*)</v></c>', xml)}

    def letters(i: int) -> str:
        return chr(65 + i) if i < 26 else chr(64 + i // 26) + chr(65 + i % 26)

    money = 0
    for r, row in enumerate(csv_rows[1:], start=2):
        for i, value in enumerate(row):
            if re.fullmatch(r"-?\d+\.\d{2}", value):
                assert numbers[(r, letters(i))] == value
                money += 1
    assert money > 100


async def test_xlsx_of_an_empty_report_is_the_header(exports: Exports) -> None:
    rows = xlsx_rows((await exports.get("statements", month="2999-01", format="xlsx")).content)
    assert [v for v, _ in rows[0]][:3] == ["affiliate_id", "month", "status"] and len(rows) == 1


async def test_xlsx_rolls_over_to_a_new_worksheet(exports: Exports, monkeypatch: pytest.MonkeyPatch) -> None:
    import openpyxl

    from web.exports import xlsx

    monkeypatch.setattr(xlsx, "XLSX_MAX_ROWS", 21)  # a header and 20 rows a sheet
    rows = await assert_xlsx_equals_csv(exports, "referrals", "admin", None, affiliate_id=ROOT)
    assert rows > 40
    content = (await exports.get("referrals", affiliate_id=ROOT, format="xlsx")).content
    names = openpyxl.load_workbook(io.BytesIO(content), read_only=True).sheetnames
    assert names[:3] == ["referrals", "referrals 2", "referrals 3"] and len(names) == -(-rows // 20)


def test_xlsx_cells(tmp_path: Any) -> None:
    """Each kind of value as its cell; amounts a double cannot hold exactly stay exact text."""
    from datetime import UTC, date, datetime

    import openpyxl

    from schema.enums import PeriodType
    from web.exports.xlsx import XlsxReport

    path = str(tmp_path / "cells.xlsx")
    report = XlsxReport(path, "cells", ["a", "b", "c", "d", "e", "f", "g", "h", "i"])
    big = Decimal("12345678901234567.89")
    report.write_rows([[Decimal("-0.10"), big, 7, 2**62, True, date(2025, 3, 1),
                        datetime(2025, 3, 2, 13, 0, tzinfo=UTC), PeriodType.MONTHLY, "=1+1"],
                       [None, Decimal("999999999999.99"), 0, None, False, None, None, None, "'=x"]])
    with pytest.raises(TypeError, match="floats are not exported"):
        report.write_rows([[0.1]])
    report.close()
    sheet = openpyxl.load_workbook(path).active
    first = [c.value for c in sheet[2]]
    assert first[0] == -0.1 and sheet["A2"].number_format == "#,##0.00"
    assert first[1] == "12345678901234567.89"  # 19 digits: exact as text
    assert first[2:5] == [7, str(2**62), True]
    assert first[5] == datetime(2025, 3, 1) and sheet["F2"].number_format == "yyyy-mm-dd"
    assert first[6:] == ["2025-03-02T13:00:00+00:00", "MONTHLY", "=1+1"]
    assert sheet["I2"].data_type == "s"  # text, never a formula
    second = [c.value for c in sheet[3]]
    assert second == [None, 999999999999.99, 0, None, False, None, None, None, "'=x"]
