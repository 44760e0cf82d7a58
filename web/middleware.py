"""The middleware every HTTP request passes: request id, authentication (401), rate limit (429),
metrics and one structured access-log line.

Open without a token: ``/healthz``, ``/readyz``, GraphiQL's static page (``GET /graphql``
from a browser) and ``/metrics`` from loopback (anywhere when ``FATURE_METRICS_PUBLIC``;
otherwise an admin token). Everything else needs a valid bearer token. The verified
``Viewer`` is put in ``request.state.viewer``; the GraphQL view and REST endpoints read it
there and nowhere else.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resolvers.viewer import Role, Viewer
from web.access_log import operation_var, request_id_var
from web.auth import AuthError

access_log = logging.getLogger("fature.access")

OPEN_PATHS = {"/healthz": "healthz", "/readyz": "readyz"}
LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _is_graphiql_page(scope: Scope) -> bool:
    """Strawberry's own test for rendering the IDE: a GET without `query` from a browser."""
    if scope["method"] != "GET":
        return False
    if b"query=" in scope.get("query_string", b""):
        return False
    accept = _header(scope, b"accept") or ""
    return "text/html" in accept or "*/*" in accept


def rejection(
    scope: Scope, status: int, code: str, message: str, headers: dict[str, str]
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A 401/429/403 body in the shape of the endpoint: GraphQL errors or the REST error object."""
    extensions: dict[str, Any] = {"code": code}
    if code == "UNAUTHENTICATED":
        extensions["reason"] = message
    body: dict[str, Any]
    if scope["path"].startswith("/graphql"):
        body = {"errors": [{"message": _sentence(code, message), "extensions": extensions}]}
    else:
        body = {"error": {"code": code, "message": _sentence(code, message)}}
    raw = orjson.dumps(body)
    header_list = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    header_list += [(k.encode(), v.encode()) for k, v in headers.items()]
    return raw, header_list


def _sentence(code: str, message: str) -> str:
    if code == "UNAUTHENTICATED":
        return f"Unauthenticated: {message}."
    return message


class ApiMiddleware:
    """Pure ASGI middleware (no per-request task or body buffering on the hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return  # no websockets: the API has no subscriptions
        api = scope["app"].state.api
        started = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        path = scope["path"]
        client = (scope.get("client") or ("unknown", 0))[0]
        request_token = request_id_var.set(request_id)
        operation_token = operation_var.set(None)
        status_holder = [500]
        viewer: Viewer | None = None

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            operation = OPEN_PATHS.get(path)
            authorization = _header(scope, b"authorization")
            if operation is None and path == "/graphql" and _is_graphiql_page(scope):
                operation = "graphiql"
            if operation is None and path == "/metrics":
                operation = "metrics"
                if not (api.settings.metrics_public or client in LOOPBACK):
                    viewer = await self._admit(scope, send_with_id, api, authorization, client)
                    if viewer is None:
                        return
                    if viewer.role is not Role.ADMIN:
                        raw, headers = rejection(scope, 403, "FORBIDDEN", "metrics need an admin token", {})
                        await self._reply(send_with_id, 403, raw, headers)
                        return
            if operation is None:
                viewer = await self._admit(scope, send_with_id, api, authorization, client)
                if viewer is None:
                    return
                state["viewer"] = viewer
            state["operation"] = operation
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            label = state.get("operation") or ("rest" if path.startswith("/api/") else "other")
            status = status_holder[0]
            api.metrics.observe(label, status, elapsed)
            if api.settings.access_log and access_log.isEnabledFor(logging.INFO):
                operation_var.set(label)
                access_log.info(
                    "request", extra={
                        "method": scope["method"], "path": path, "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "role": viewer.role.value if viewer is not None else None,
                        "cache": state.get("cache"),
                    },
                )
            request_id_var.reset(request_token)
            operation_var.reset(operation_token)

    async def _admit(self, scope: Scope, send: Send, api: Any, authorization: str | None,
                     client: str) -> Viewer | None:
        """The verified viewer after the rate limit, or None once a 401/429 was sent."""
        state = scope["state"]
        try:
            viewer = api.authenticator.authenticate(authorization)
        except AuthError as exc:
            state["operation"] = "unauthenticated"
            api.metrics.auth_failures.labels(exc.reason).inc()
            verdict = await api.rate_limiter.hit(f"ip:{client}", anonymous=True)
            if not verdict.allowed:
                await self._too_many(scope, send, api, verdict.retry_after, "anonymous")
                return None
            raw, headers = rejection(
                scope, 401, "UNAUTHENTICATED", exc.reason,
                {"www-authenticate": f'Bearer error="invalid_token", error_description="{exc.reason}"'},
            )
            await self._reply(send, 401, raw, headers)
            return None
        state["rate_key"] = f"sub:{viewer.subject}"
        verdict = await api.rate_limiter.hit(state["rate_key"], anonymous=False)
        if not verdict.allowed:
            state["operation"] = "rate_limited"
            await self._too_many(scope, send, api, verdict.retry_after, "token")
            return None
        return viewer

    async def _too_many(self, scope: Scope, send: Send, api: Any, retry_after: int, kind: str) -> None:
        api.metrics.rate_limited.labels(kind).inc()
        raw, headers = rejection(
            scope, 429, "RATE_LIMITED", f"Too many requests; retry in {retry_after} s",
            {"retry-after": str(retry_after)},
        )
        await self._reply(send, 429, raw, headers)

    @staticmethod
    async def _reply(send: Send, status: int, body: bytes, headers: list) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
