"""Fixtures of the security tests: the shared ETL-built world, served with the door's
features on (cache, limits), and clients holding tokens of each role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.resolvers.world import Api, World, api, serve, token, world  # noqa: F401 - shared fixtures

# The tree of tests/resolvers/world.py: 300 is the root; 301 is one of its children, whose
# children are 326, 329, ... (326..340 split over 301..303), and 326 has 341..350 below it.
ROOT, AFFILIATE, CHILD, GRANDCHILD, SIBLING = 300, 301, 326, 341, 302


class Clients:
    """One HTTP client per role on the same app."""

    def __init__(self, served: Api) -> None:
        self.api = served
        self.settings = served.app.state.api.settings

    def headers(self, role: str, affiliate_id: int | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token(self.settings, role, affiliate_id)}"}

    async def post(self, headers: dict[str, str], query: str, variables: dict[str, Any] | None = None
                   ) -> httpx.Response:
        return await self.api.client.post("/graphql", json={"query": query, "variables": variables or {}},
                                          headers=headers)

    async def data(self, headers: dict[str, str], query: str, variables: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
        response = await self.post(headers, query, variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


@pytest.fixture(scope="session")
async def secure(world: World) -> AsyncIterator[Clients]:  # noqa: F811
    """The app with the response cache on (memory), rate limits off (tests/security/
    test_rate_limit.py turns them on), and no default token."""
    async with serve(world, role=None, cache_enabled=True) as served:
        yield Clients(served)
