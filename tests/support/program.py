"""A small program built by the real ETL, in its own databases (these tests write).

Affiliate 1 has users 11..17 (each qualifies in March 2025: CPA 50.00 each = 350.00) and
user 18 (a big win in April 2025: negative REV). Affiliate 2 has user 21 (qualifies in
March: CPA 50.00, below the minimum payout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etl.sync import run_cycle
from tests.support.deployment import Api, Deployment, token
from tests.support.factories import Operation


@dataclass
class Program:
    deployment: Deployment
    api: Api

    async def etl(self, full: bool = False) -> None:
        result = await run_cycle(self.deployment.settings, self.deployment.robust_url, self.deployment.operation_url,
                                 full=full)
        assert result.status == "success"

    def headers(self, role: str, affiliate_id: int | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token(self.deployment.settings, role, affiliate_id)}"}

    async def gql(self, query: str, variables: dict[str, Any] | None = None, *, role: str = "admin",
                  affiliate_id: int | None = None) -> dict[str, Any]:
        response = await self.api.client.post(
            "/graphql", json={"query": query, "variables": variables or {}},
            headers=self.headers(role, affiliate_id))
        assert response.status_code == 200, response.text
        return response.json()

    async def data(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        body = await self.gql(query, variables, **kw)
        assert "errors" not in body, body["errors"]
        return body["data"]

    async def error(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        body = await self.gql(query, variables, **kw)
        assert body.get("errors"), body
        return body["errors"][0]


async def write_program(op: Operation) -> None:
    await op.user(1, "Ana Afiliada", afiliado=True)
    await op.user(2, "Beto Afiliado", afiliado=True)
    for user, parent in [*((u, 1) for u in range(11, 19)), (21, 2)]:
        await op.user(user, at="2025-03-01 12:00Z")
        await op.track(user, parent, "2025-03-01 12:00Z")
    for user in [*range(11, 18), 21]:
        await op.deposit(user, "50.00", "2025-03-02 12:00Z")
        await op.bet(user, "60.00", "20.00", "2025-03-02 13:00Z")
        await op.bet(user, "60.00", "40.00", "2025-03-03 13:00Z")
    await op.deposit(18, "100.00", "2025-04-02 12:00Z")
    await op.bet(18, "100.00", "900.00", "2025-04-02 13:00Z")  # GGR -800: REV -200.00


async def past_plan(url: str, affiliate_id: int, versions: list[dict[str, Any]]) -> list[int]:
    """Put ``affiliate_id`` on a new plan since always, with versions dated in the past (the
    API refuses that: this is the past as if they had been scheduled in time). A version is
    ``effective_from`` plus any of cpa_level_1, rev_share_level_1, negative_carryover,
    min_payout; the rest are the default plan's. Returns the version ids."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        plan = await conn.fetchval("INSERT INTO commission_plans (name) VALUES ($1) RETURNING id",
                                   f"past-{affiliate_id}")
        ids = []
        for v in versions:
            ids.append(await conn.fetchval(
                "INSERT INTO commission_plan_versions (plan_id, effective_from, cpa_level_1, cpa_level_2,"
                " cpa_level_3, cpa_level_4, cpa_level_5, rev_share_level_1, rev_share_level_2,"
                " rev_share_level_3, rev_share_level_4, rev_share_level_5, negative_carryover, min_payout)"
                " VALUES ($1, $2::text::date, $3::text::numeric, 20, 10, 5, 5, $4::text::numeric, 0.10,"
                " 0.05, 0.03, 0.02, $5, $6::text::numeric) RETURNING id",
                plan, v["effective_from"], v.get("cpa_level_1", "50.00"), v.get("rev_share_level_1", "0.25"),
                v.get("negative_carryover", True), v.get("min_payout", "300.00")))
        await conn.execute("INSERT INTO affiliate_plan_history (affiliate_id, effective_from, plan_id) "
                           "VALUES ($1, DATE '1900-01-01', $2)", affiliate_id, plan)
        return ids
    finally:
        await conn.close()
