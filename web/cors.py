"""CORS: which browser origins may call the API (``FATURE_CORS_ORIGINS``,
``FATURE_CORS_ORIGIN_REGEX``; none by default, so a browser page on another origin cannot).

Starlette's ``CORSMiddleware`` sits outside the request middleware (web/middleware.py), so a
preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin is
answered before authentication, and every answer to an allowed origin carries
``Access-Control-Allow-Origin``, refusals (401, 429, 413, ...) included: a portal's GraphQL
client can read why it was refused. The headers a GraphQL client sends are allowed
(``Authorization``, ``Content-Type``, ``Accept``, Apollo's client headers); the ones it may
read are exposed (``X-Request-Id``, ``Retry-After``). No cookies: tokens travel in the
``Authorization`` header, so credentials mode is off.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from db.settings import Settings

ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "Accept",
    "X-Request-Id",
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
]
EXPOSED_HEADERS = ["X-Request-Id", "Retry-After"]


def cors_middleware(settings: Settings) -> list[Middleware]:
    """The CORS middleware for the configured origins; none when no origin is allowed."""
    if not settings.cors_origins and settings.cors_origin_regex is None:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_origin_regex=settings.cors_origin_regex,
            allow_methods=["GET", "POST"],
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=settings.cors_max_age_seconds,
        )
    ]
