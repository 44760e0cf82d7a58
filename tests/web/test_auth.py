"""Every bad token is a 401 with a short reason (GraphQL and REST), never a crash; the open
endpoints answer without one; RS256 works with a public key file and with a JWKS file."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from resolvers.viewer import Role
from tests.support.clients import Clients
from tests.support.deployment import JWT_SECRET, Api, Deployment, serve
from web.auth import Authenticator, AuthError, mint_token

QUERY = '{ affiliate(id: "300") { id } }'


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(**extra: object) -> dict:
    return {"sub": "someone", "role": "admin", "exp": int(time.time()) + 600, **extra}


def bad_tokens() -> dict[str, tuple[str | None, str]]:
    """name -> (Authorization header, the reason the client is told)."""
    good = jwt.encode(_claims(role="affiliate", affiliate_id=301), JWT_SECRET, algorithm="HS256")
    header, payload, signature = good.split(".")
    tampered = _b64({**json.loads(base64.urlsafe_b64decode(payload + "==")), "role": "admin"})
    return {
        "missing": (None, "missing bearer token"),
        "not bearer": ("Basic dXNlcjpwYXNz", "expected 'Authorization: Bearer <token>'"),
        "garbage": ("Bearer not-a-token", "malformed token"),
        "alg none": ("Bearer " + _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + ".",
                     "token algorithm not accepted"),
        "wrong signature": ("Bearer " + jwt.encode(_claims(), "another-secret-" + "y" * 40, algorithm="HS256"),
                            "invalid signature"),
        "expired": ("Bearer " + jwt.encode(_claims(exp=int(time.time()) - 3600), JWT_SECRET, algorithm="HS256"),
                    "token expired"),
        "tampered role": (f"Bearer {header}.{tampered}.{signature}", "invalid signature"),
        "no exp": ("Bearer " + jwt.encode({"sub": "x", "role": "admin"}, JWT_SECRET, algorithm="HS256"),
                   "missing claim: exp"),
        "unknown role": ("Bearer " + jwt.encode(_claims(role="root"), JWT_SECRET, algorithm="HS256"),
                         "invalid role"),
        "affiliate without id": ("Bearer " + jwt.encode(_claims(role="affiliate"), JWT_SECRET, algorithm="HS256"),
                                 "affiliate token without a valid affiliate_id"),
        "HS512": ("Bearer " + jwt.encode(_claims(), JWT_SECRET, algorithm="HS512"), "token algorithm not accepted"),
        # Issue 13: an affiliate_id of the wrong type was truncated (1000986.9 read as 1000986).
        "float affiliate_id": ("Bearer " + _signed(role="affiliate", affiliate_id=301.9),
                               "affiliate token without a valid affiliate_id"),
        "string exp": ("Bearer " + _signed(exp=str(int(time.time()) + 600)), "invalid claim: exp must be a number"),
    }


def _signed(**claims: object) -> str:
    return jwt.encode(_claims(**claims), JWT_SECRET, algorithm="HS256")


# Issue 13: each claim has its JSON type, never converted (name -> claims, the reason told).
WRONG_TYPES: dict[str, tuple[dict[str, object], str]] = {
    "float affiliate_id": ({"role": "affiliate", "affiliate_id": 1000986.9}, "affiliate token without a valid affiliate_id"),
    "integral float affiliate_id": ({"role": "affiliate", "affiliate_id": 301.0},
                                    "affiliate token without a valid affiliate_id"),
    "string affiliate_id": ({"role": "affiliate", "affiliate_id": "301"}, "affiliate token without a valid affiliate_id"),
    "bool affiliate_id": ({"role": "affiliate", "affiliate_id": True}, "affiliate token without a valid affiliate_id"),
    "zero affiliate_id": ({"role": "affiliate", "affiliate_id": 0}, "affiliate token without a valid affiliate_id"),
    "affiliate_id beyond bigint": ({"role": "affiliate", "affiliate_id": 2**63},
                                   "affiliate token without a valid affiliate_id"),
    "list affiliate_id": ({"role": "affiliate", "affiliate_id": [301]}, "affiliate token without a valid affiliate_id"),
    # Far ahead: the table is built at collection, and the suite may reach this test much later.
    "string exp": ({"exp": str(int(time.time()) + 10 * 365 * 86400)}, "invalid claim: exp must be a number"),
    "null exp": ({"exp": None}, "missing claim: exp"),
    "string iat": ({"iat": str(int(time.time()))}, "invalid claim: iat must be a number"),
    "string nbf": ({"nbf": str(int(time.time()) - 10)}, "invalid claim: nbf must be a number"),
    "exp beyond any float": ({"exp": 10**400}, "invalid claim: exp must be a number"),
    "list role": ({"role": ["admin"]}, "invalid role"),
    "null role": ({"role": None}, "invalid role"),
    "role in capitals": ({"role": "ADMIN"}, "invalid role"),
    "empty subject": ({"sub": ""}, "invalid subject"),
    "blank subject": ({"sub": "  "}, "invalid subject"),
    "numeric subject": ({"sub": 42}, "invalid token"),  # PyJWT's own check
}


@pytest.mark.parametrize("name", list(WRONG_TYPES))
def test_claims_of_the_wrong_type_are_refused(deployment: Deployment, name: str) -> None:
    claims, reason = WRONG_TYPES[name]
    with pytest.raises(AuthError) as refused:
        Authenticator(deployment.settings).authenticate("Bearer " + _signed(**claims))
    assert refused.value.reason == reason


def test_claims_of_the_right_types_are_accepted(deployment: Deployment) -> None:
    now = time.time()
    viewer = Authenticator(deployment.settings).authenticate("Bearer " + _signed(
        role="affiliate", affiliate_id=1000986, sub="affiliate:1000986",
        exp=now + 600.5, iat=now - 1.25, nbf=int(now) - 10))  # NumericDate may have a fraction
    assert (viewer.role, viewer.affiliate_id, viewer.subject) == (Role.AFFILIATE, 1000986, "affiliate:1000986")
    admin = Authenticator(deployment.settings).authenticate("Bearer " + _signed(affiliate_id=1.5))
    assert admin.role is Role.ADMIN and admin.affiliate_id is None  # ignored unless an affiliate


@pytest.mark.parametrize("name", list(bad_tokens()))
async def test_bad_tokens_are_401_with_a_reason(secure: Clients, name: str) -> None:
    authorization, reason = bad_tokens()[name]
    headers = {"authorization": authorization} if authorization else {}
    response = await secure.api.client.post("/graphql", json={"query": QUERY}, headers=headers)
    assert response.status_code == 401, response.text
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "UNAUTHENTICATED", "reason": reason}
    assert response.headers["www-authenticate"].startswith("Bearer")
    for url in ("/api/v1/affiliates/300", "/api/v1/affiliates/300/referrals"):
        rest = await secure.api.client.get(url, headers=headers)
        assert rest.status_code == 401 and rest.json()["error"]["code"] == "UNAUTHENTICATED"
    post = await secure.api.client.post("/api/v1/affiliates/300/validate-cpa", headers=headers)
    assert post.status_code == 401
    get = await secure.api.client.get("/graphql", params={"query": QUERY}, headers=headers)
    assert get.status_code == 401


async def test_open_endpoints(secure: Clients) -> None:
    client = secure.api.client
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "query Dashboard" in page.text
    assert (await client.get("/metrics")).status_code == 200  # the test client is loopback


async def test_metrics_from_elsewhere_need_an_admin_token(deployment: Deployment) -> None:
    import httpx

    async with serve(deployment, role=None) as api:
        transport = httpx.ASGITransport(app=api.app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as remote:
            assert (await remote.get("/metrics")).status_code == 401
            analyst = mint_token(api.app.state.api.settings, "analyst")
            assert (await remote.get("/metrics", headers={"authorization": f"Bearer {analyst}"})).status_code == 403
            admin = mint_token(api.app.state.api.settings, "admin")
            assert (await remote.get("/metrics", headers={"authorization": f"Bearer {admin}"})).status_code == 200
            assert (await remote.get("/healthz")).status_code == 200


async def test_audience_and_issuer_are_checked_when_configured(deployment: Deployment) -> None:
    async with serve(deployment, role=None, jwt_audience="fature-api", jwt_issuer="https://auth.example") as api:
        settings = api.app.state.api.settings
        good = mint_token(settings, "admin")
        ok = await api.client.post("/graphql", json={"query": QUERY}, headers={"authorization": f"Bearer {good}"})
        assert ok.status_code == 200
        for claims, reason in (({"aud": "other", "iss": "https://auth.example"}, "wrong audience"),
                               ({"aud": "fature-api", "iss": "https://evil.example"}, "wrong issuer"),
                               ({"iss": "https://auth.example"}, "missing claim: aud")):
            bad = jwt.encode(_claims(**claims), JWT_SECRET, algorithm="HS256")
            response = await api.client.post("/graphql", json={"query": QUERY},
                                             headers={"authorization": f"Bearer {bad}"})
            assert response.status_code == 401
            assert response.json()["errors"][0]["extensions"]["reason"] == reason


async def test_short_ttl_tokens_expire(deployment: Deployment) -> None:
    async with serve(deployment, role=None, jwt_leeway_seconds=0) as api:
        brief = mint_token(api.app.state.api.settings, "admin", ttl=timedelta(seconds=1))
        headers = {"authorization": f"Bearer {brief}"}
        assert (await api.client.post("/graphql", json={"query": QUERY}, headers=headers)).status_code == 200
        await asyncio.sleep(2.1)  # the verified-token memo must not outlive exp
        response = await api.client.post("/graphql", json={"query": QUERY}, headers=headers)
        assert response.status_code == 401 and response.json()["errors"][0]["extensions"]["reason"] == "token expired"


def test_mint_token_refuses_what_it_cannot_sign(deployment: Deployment) -> None:
    with pytest.raises(ValueError):
        mint_token(deployment.settings, "affiliate")  # no affiliate_id
    with pytest.raises(ValueError):
        mint_token(deployment.settings, "superuser")
    with pytest.raises(ValueError):
        mint_token(deployment.settings.model_copy(update={"jwt_secret": None}), "admin")


@pytest.fixture
async def rs256(deployment: Deployment, tmp_path: Path) -> AsyncIterator[tuple[Api, Api, Path]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "private.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = tmp_path / "public.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    common = {"jwt_algorithm": "RS256", "jwt_private_key_file": private}
    async with serve(deployment, role=None, jwt_public_key_file=public, **common) as by_pem, \
            serve(deployment, role=None, jwt_jwks_file=jwks, **common) as by_jwks:
        yield by_pem, by_jwks, private


async def test_rs256_with_a_public_key_or_a_jwks_file(rs256: tuple[Api, Api, Path]) -> None:
    by_pem, by_jwks, private = rs256
    token = mint_token(by_pem.app.state.api.settings, "affiliate", 301)
    kid_token = jwt.encode(_claims(), private.read_text(), algorithm="RS256", headers={"kid": "k1"})
    hs_token = jwt.encode(_claims(), JWT_SECRET, algorithm="HS256")  # the HS secret is not a key here
    for api in (by_pem, by_jwks):
        for good in (token, kid_token):
            ok = await api.client.post("/graphql", json={"query": "{ me { id } }"},
                                       headers={"authorization": f"Bearer {good}"})
            assert ok.status_code == 200, ok.text
        assert (await api.client.post("/graphql", json={"query": QUERY},
                                      headers={"authorization": f"Bearer {hs_token}"})).status_code == 401
    unknown_kid = jwt.encode(_claims(), private.read_text(), algorithm="RS256", headers={"kid": "k9"})
    response = await by_jwks.client.post("/graphql", json={"query": QUERY},
                                         headers={"authorization": f"Bearer {unknown_kid}"})
    assert response.json()["errors"][0]["extensions"]["reason"] == "unknown signing key"


def test_settings_refuse_a_short_secret() -> None:
    from db.settings import Settings

    with pytest.raises(ValueError):
        Settings(jwt_secret="short", _env_file=None)
    assert Settings(jwt_secret=SecretStr("z" * 32), _env_file=None).jwt_secret is not None
