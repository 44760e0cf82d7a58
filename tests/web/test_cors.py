"""CORS (issue 12): allowed origins from the settings, preflights answered before
authentication, the allow-origin header on every answer to an allowed origin (refusals too),
nothing for other origins, and no CORS at all by default."""

from __future__ import annotations

import re

from cli import DEMO_CORS_ORIGINS
from tests.support.deployment import Deployment, serve

PORTAL = "https://portal.example.com"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


async def test_a_preflight_is_answered_before_authentication(deployment: Deployment) -> None:
    async with serve(deployment, role=None, cors_origins=[PORTAL]) as api:
        answer = await api.client.options("/graphql", headers={"Origin": PORTAL, **PREFLIGHT})
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == PORTAL
        assert "POST" in answer.headers["access-control-allow-methods"]
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert answer.headers["access-control-max-age"] == "600"
        assert "access-control-allow-credentials" not in answer.headers

        # Refusals carry the header too, so the portal can read why (here: no token, 401).
        refused = await api.client.post("/graphql", json={"query": "{ syncStatus { dataAsOf } }"},
                                        headers={"Origin": PORTAL})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == PORTAL
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert "x-request-id" in refused.headers["access-control-expose-headers"].lower()

        # Another origin: its preflight is refused and no answer names it.
        other = await api.client.options("/graphql", headers={"Origin": "https://evil.example", **PREFLIGHT})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        plain = await api.client.post("/graphql", json={"query": "{ syncStatus { dataAsOf } }"},
                                      headers={"Origin": "https://evil.example"})
        assert plain.status_code == 401 and "access-control-allow-origin" not in plain.headers


async def test_an_allowed_origin_reads_data(deployment: Deployment) -> None:
    async with serve(deployment, cors_origin_regex=DEMO_CORS_ORIGINS) as api:
        for origin in ("http://localhost:3000", "http://127.0.0.1:5173", "http://localhost"):
            answer = await api.client.post("/graphql", json={"query": "{ syncStatus { dataAsOf } }"},
                                           headers={"Origin": origin})
            assert answer.status_code == 200 and answer.json()["data"]["syncStatus"]["dataAsOf"]
            assert answer.headers["access-control-allow-origin"] == origin
        for origin in ("http://localhost.evil.example", "https://localhost:3000", "http://10.0.0.1:3000"):
            answer = await api.client.post("/graphql", json={"query": "{ syncStatus { dataAsOf } }"},
                                           headers={"Origin": origin})
            assert "access-control-allow-origin" not in answer.headers, origin


async def test_no_cors_by_default(deployment: Deployment) -> None:
    assert deployment.settings.cors_origins == [] and deployment.settings.cors_origin_regex is None
    async with serve(deployment, role=None) as api:
        answer = await api.client.options("/graphql", headers={"Origin": PORTAL, **PREFLIGHT})
        assert "access-control-allow-origin" not in answer.headers
        assert answer.status_code in (401, 405)


def test_the_demo_pattern_is_anchored() -> None:
    pattern = re.compile(DEMO_CORS_ORIGINS)
    assert pattern.fullmatch("http://localhost:8080") and pattern.fullmatch("http://127.0.0.1")
    assert not pattern.match("http://localhost:8080.evil.example")
