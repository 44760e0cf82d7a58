"""Clients holding tokens of each role on one served app (the ``secure`` fixture), and the
affiliates of the shared deployment's tree the scoping tests use."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.deployment import Api, token

# The tree of tests/support/deployment.py: 300 is the root; 301 is one of its children, whose
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
