"""JWT bearer tokens: who is asking.

HS256 with ``FATURE_JWT_SECRET`` by default; RS256 with a PEM public key or a JWKS file as
an option. Claims: ``sub``, ``role`` (admin | analyst | affiliate), ``affiliate_id`` for
affiliates, ``exp`` (required), and ``iss``/``aud`` when configured. Only the configured
algorithm is accepted (never ``none``). A bad token raises ``AuthError`` with a short reason
the client may see; nothing about the token is ever logged.

Claims must have their JSON types, never converted: ``sub`` a non-empty string, ``role`` one
of the role strings, ``affiliate_id`` a positive JSON integer (not ``1000986.9``, ``12.0``,
``"12"`` or ``true``), and ``exp``/``iat``/``nbf`` JSON numbers (PyJWT itself would take the
string ``"9999999999"``).
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import jwt

from db.settings import Settings
from resolvers.viewer import Role, Viewer


class AuthError(Exception):
    """The request carries no usable token; ``reason`` is short and safe to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Authenticator:
    """Verifies tokens against the settings' keys; remembers verified tokens briefly (the
    signature is checked once per distinct token, ``exp`` on every use)."""

    def __init__(self, settings: Settings, remember: int = 4096) -> None:
        self.settings = settings
        self._remember = remember
        self._verified: OrderedDict[str, tuple[Viewer, float]] = OrderedDict()

    @cached_property
    def _static_key(self) -> Any:
        s = self.settings
        if s.jwt_algorithm == "HS256":
            return s.jwt_secret.get_secret_value() if s.jwt_secret is not None else None
        if s.jwt_public_key_file is not None:
            return Path(s.jwt_public_key_file).read_text(encoding="utf-8")
        return None

    @cached_property
    def _jwks(self) -> jwt.PyJWKSet | None:
        path = self.settings.jwt_jwks_file
        if self.settings.jwt_algorithm != "RS256" or path is None:
            return None
        return jwt.PyJWKSet.from_json(Path(path).read_text(encoding="utf-8"))

    def _key_for(self, header: dict[str, Any]) -> Any:
        if self._jwks is not None:
            kid = header.get("kid")
            for key in self._jwks.keys:
                if kid is None or key.key_id == kid:
                    return key.key
            raise AuthError("unknown signing key")
        if self._static_key is None:
            raise AuthError("authentication is not configured on this server")
        return self._static_key

    def authenticate(self, authorization: str | None) -> Viewer:
        """The viewer of an ``Authorization`` header value, or ``AuthError``."""
        if not authorization:
            raise AuthError("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("expected 'Authorization: Bearer <token>'")
        now = time.time()
        remembered = self._verified.get(token)
        if remembered is not None:
            viewer, expires = remembered
            if now < expires + self.settings.jwt_leeway_seconds:
                return viewer
            del self._verified[token]
            raise AuthError("token expired")
        viewer, expires = self._verify(token)
        self._verified[token] = (viewer, expires)
        if len(self._verified) > self._remember:
            self._verified.popitem(last=False)
        return viewer

    def _verify(self, token: str) -> tuple[Viewer, float]:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise AuthError("malformed token") from exc
        if header.get("alg") != s.jwt_algorithm:
            raise AuthError("token algorithm not accepted")
        key = self._key_for(header)
        try:
            claims = jwt.decode(
                token, key, algorithms=[s.jwt_algorithm], audience=s.jwt_audience,
                issuer=s.jwt_issuer, leeway=s.jwt_leeway_seconds,
                options={"require": ["exp", "sub"], "verify_aud": s.jwt_audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("invalid signature") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("wrong audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("wrong issuer") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError("token not yet valid") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"missing claim: {exc.claim}") from exc
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise AuthError("invalid token") from exc
        expires = _numeric_dates(claims)
        return _viewer(claims), expires


# The largest id PostgreSQL's bigint holds: a larger claim could not name an affiliate.
MAX_AFFILIATE_ID = 2**63 - 1
NUMERIC_DATES = ("exp", "iat", "nbf")


def _is_number(value: object) -> bool:
    """A JSON number: int or float (finite), never a bool or a numeric string."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _numeric_dates(claims: dict[str, Any]) -> float:
    """``exp`` (and ``iat``/``nbf`` when present) as JSON numbers; returns ``exp``."""
    for name in NUMERIC_DATES:
        if name in claims and not _is_number(claims[name]):
            raise AuthError(f"invalid claim: {name} must be a number")
    try:
        return float(claims["exp"])
    except OverflowError as exc:  # an int beyond any float: no real expiry
        raise AuthError("invalid claim: exp must be a number") from exc


def _viewer(claims: dict[str, Any]) -> Viewer:
    role_claim = claims.get("role")
    try:
        if not isinstance(role_claim, str):
            raise ValueError(role_claim)
        role = Role(role_claim)
    except ValueError as exc:
        raise AuthError("invalid role") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise AuthError("invalid subject")
    affiliate_id: int | None = None
    if role is Role.AFFILIATE:
        claim = claims.get("affiliate_id")
        # type(...) is int: a JSON integer, neither a bool, a float (1000986.9, 12.0) nor "12".
        if type(claim) is not int or not 0 < claim <= MAX_AFFILIATE_ID:
            raise AuthError("affiliate token without a valid affiliate_id")
        affiliate_id = claim
    return Viewer(role=role, subject=subject, affiliate_id=affiliate_id)


def mint_token(
    settings: Settings,
    role: str,
    affiliate_id: int | None = None,
    ttl: timedelta = timedelta(hours=1),
    subject: str | None = None,
) -> str:
    """A signed token for development and the demo (``fature token``).

    HS256 signs with ``FATURE_JWT_SECRET``; RS256 with ``FATURE_JWT_PRIVATE_KEY_FILE``.
    Raises ``ValueError`` when the role or the keys do not allow it.
    """
    role_value = Role(role)
    if role_value is Role.AFFILIATE and (affiliate_id is None or affiliate_id <= 0):
        raise ValueError("an affiliate token needs a positive affiliate_id")
    if ttl <= timedelta(0):
        raise ValueError("ttl must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject or (f"affiliate:{affiliate_id}" if role_value is Role.AFFILIATE
                           else f"{role_value.value}:{uuid.uuid4().hex[:8]}"),
        "role": role_value.value,
        "iat": now,
        "exp": now + int(ttl.total_seconds()),
    }
    if role_value is Role.AFFILIATE:
        claims["affiliate_id"] = affiliate_id
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_algorithm == "HS256":
        if settings.jwt_secret is None:
            raise ValueError("set FATURE_JWT_SECRET (32+ bytes) to mint HS256 tokens")
        return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
    if settings.jwt_private_key_file is None:
        raise ValueError("set FATURE_JWT_PRIVATE_KEY_FILE to mint RS256 tokens")
    key = Path(settings.jwt_private_key_file).read_text(encoding="utf-8")
    return jwt.encode(claims, key, algorithm="RS256")
