"""A small deployment built by the real ETL: the EXAMPLE.md network plus a deeper tree of 62
affiliates (so lists have several pages), and the app serving it.

Shared (the session-scoped ``deployment`` and ``api`` fixtures of tests/conftest.py) and read-only:
tests that write get their own databases.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from starlette.applications import Starlette

from app import create_app
from db.settings import Settings
from etl.sync import run_cycle
from tests.support.databases import drop_database, new_operation_database, new_robust_database
from tests.support.factories import Operation, write_worked_example
from web.auth import mint_token

ROOT = 300
TREE = range(301, 362)
JWT_SECRET = "test-secret-" + "x" * 60
# The resolver tests are about resolvers: no response cache, rate limits or freshness poll.
PLAIN = {"cache_enabled": False, "rate_limit_enabled": False, "freshness_poll_seconds": 0}


@dataclass
class Deployment:
    """A robust and an operation database, and the settings an app serving them runs with."""

    robust_url: str
    operation_url: str
    settings: Settings


def parents(user: int) -> int:
    """The referrer of each user of the tree: five full levels below 300 and one more."""
    if user <= 325:
        return ROOT
    if user <= 340:
        return 301 + (user - 326) % 3
    if user <= 350:
        return 326
    if user <= 356:
        return 341
    if user <= 360:
        return 351
    return 357


async def write_example(op: Operation) -> None:
    await write_worked_example(op)


async def write_tree(op: Operation) -> None:
    await op.user(ROOT, "Bia Raiz", afiliado=True, at="2025-02-01 00:00Z")
    for user in TREE:
        status = "inativo" if user % 7 == 0 else "suspenso" if user % 11 == 0 else "ativo"
        await op.user(user, f"Afiliado {user}", afiliado=True, status=status, at="2025-02-01 00:00Z")
    for user in TREE:
        day = date(2025, 3, 1) + timedelta(days=user - 301)
        at = f"{day.isoformat()} 09:{user % 60:02d}Z"
        await op.track(user, parents(user), at)
        await op.deposit(user, f"{30 + (user % 5) * 10}.00", f"{day.isoformat()} 10:00Z")
        await op.bet(user, "60.00", f"{(user % 3) * 25}.00", f"{day.isoformat()} 11:00Z")
        if user % 2 == 0:  # a second active day: these users qualify for CPA
            await op.bet(user, "50.00", "10.00", f"{(day + timedelta(days=1)).isoformat()} 12:00Z")
        if user % 4 == 1:
            await op.withdrawal(user, "20.00", f"{(day + timedelta(days=2)).isoformat()} 14:00Z")
        if user % 6 == 0:
            await op.deposit(user, "99.00", f"{day.isoformat()} 15:00Z", "pendente")


async def build_deployment(robust_template: str) -> Deployment:
    robust_url, operation_url = await new_robust_database(robust_template), await new_operation_database()
    return await deploy_into(robust_url, operation_url)


async def deploy_into(robust_url: str, operation_url: str) -> Deployment:
    """Write the deployment's source data into ``operation_url`` and load it into the migrated
    ``robust_url`` with one real ETL cycle."""
    op = await Operation.open(operation_url)
    try:
        await write_example(op)
        await write_tree(op)
    finally:
        await op.close()
    settings = Settings(database_url=robust_url, operation_database_url=operation_url,
                        etl_scheduler_enabled=False, jwt_secret=JWT_SECRET, _env_file=None, **PLAIN)
    result = await run_cycle(settings, robust_url, operation_url)
    assert result.status == "success"
    return Deployment(robust_url, operation_url, settings)


async def drop_deployment(deployment: Deployment) -> None:
    for url in (deployment.robust_url, deployment.operation_url):
        await drop_database(url)


class Api:
    """The app under test, its HTTP client, and helpers."""

    def __init__(self, app: Starlette, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post("/graphql", json={"query": query, "variables": variables or {}})
        assert response.status_code == 200, response.text
        return response.json()

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = await self.graphql(query, variables)
        assert "errors" not in body, body["errors"]
        return body["data"]

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = await self.graphql(query, variables)
        assert body.get("errors"), body
        return body["errors"][0]

    @contextmanager
    def queries(self) -> Iterator[list[str]]:
        """Every SQL statement the app sends while the block runs: the loaders' reads go to
        asyncpg directly (``Database.query_listeners``), the rest through the engine."""
        seen: list[str] = []
        database = self.app.state.api.database
        engine = database.engine.sync_engine

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        database.query_listeners.append(seen.append)
        try:
            yield seen
        finally:
            database.query_listeners.remove(seen.append)
            event.remove(engine, "before_cursor_execute", record)


def token(settings: Settings, role: str = "admin", affiliate_id: int | None = None, **claims: Any) -> str:
    """A signed token for the tests (the same code as `fature token`)."""
    return mint_token(settings, role, affiliate_id, subject=claims.pop("subject", None)
                      or f"{role}-{affiliate_id}-{uuid.uuid4().hex[:8]}")


@asynccontextmanager
async def serve(deployment: Deployment, role: str | None = "admin", **overrides: Any) -> AsyncIterator[Api]:
    """The app with its lifespan running, behind an in-process ASGI client that sends a
    token of ``role`` (None: no token); ``overrides`` change the deployment's settings."""
    settings = deployment.settings.model_copy(update=overrides) if overrides else deployment.settings
    app = create_app(settings, robust_url=deployment.robust_url, start_scheduler=False)
    headers = {"authorization": f"Bearer {token(settings, role)}"} if role else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            yield Api(app, client)


async def rows(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()
