"""The middleware every HTTP request passes: request id, body size (413), authentication (401),
suspended accounts (403), rate limit (429), metrics and one structured access-log line.

Open without a token: ``/healthz``, ``/readyz``, GraphiQL's static page (``GET /graphql``
from a browser; it holds no data and counts against the anonymous per-IP rate limit; its
assets under ``/graphiql/`` do not) and
``/metrics`` from loopback (anywhere when ``FATURE_METRICS_PUBLIC``; otherwise an admin
token). Loopback is the client's IP address (127.0.0.0/8, ::1): a host name never is, and
the client address is the socket's peer unless a proxy of ``FATURE_TRUSTED_PROXIES`` sent it
(``fature serve`` tells uvicorn to believe forwarded headers from those only). Everything
else needs a valid bearer token; an affiliate whose account is suspended is refused
(``web/accounts.py``). The verified ``Viewer`` is put in ``request.state.viewer``; the
GraphQL view and REST endpoints read it there and nowhere else.

A body larger than ``FATURE_MAX_BODY_BYTES`` is refused with 413 before it is read: by its
Content-Length up front, or, sent in chunks, as soon as the bytes received pass the limit.
A WebSocket handshake is refused (close 1008, HTTP 403 to the client) except on ``/graphql``,
whose subscription endpoint authenticates the connection itself (web/subscriptions.py). An
exception escaping the app is logged (``fature.api``, database values scrubbed) and answered
500 with a JSON error, never a traceback.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.engine import DatabaseUnavailable
from db.reader import UNAVAILABLE_MESSAGE
from resolvers.viewer import Role, Viewer
from web.access_log import operation_var, request_id_var
from web.auth import AuthError
from web.media import content_type, negotiate

access_log = logging.getLogger("fature.access")
log = logging.getLogger("fature.api")

OPEN_PATHS = {"/healthz": "healthz", "/readyz": "readyz"}
# GraphiQL's own static files (scripts, styles, licences: no data), open like its page.
ASSET_PREFIX = "/graphiql/"
# Paths whose WebSocket handshakes reach the app: GraphQL subscriptions (web/subscriptions.py,
# which authenticates each connection by its connection_init payload).
WEBSOCKET_PATHS: frozenset[str] = frozenset({"/graphql"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_loopback(host: str | None) -> bool:
    """The client is this machine: an IP address in 127.0.0.0/8 or ::1 (an IPv4-mapped one
    too). A host name ("localhost") never is: it is what a forwarded header would say."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class BodyTooLarge(Exception):
    """Raised by the limited ``receive`` once a chunked body passes the limit."""


def limited_receive(receive: Receive, limit: int) -> Receive:
    """``receive`` counting the body's bytes; past ``limit`` it raises ``BodyTooLarge``
    (the rest of the body is never read)."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
        return message

    return limited


def _content_length(scope: Scope) -> int | None:
    """The declared body size; -1 when the header is not a number."""
    value = _header(scope, b"content-length")
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 20 else -1


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _is_graphiql_page(scope: Scope) -> bool:
    """Strawberry's own test for rendering the IDE: a GET without `query` from a browser."""
    if scope["method"] != "GET":
        return False
    query_string = scope.get("query_string", b"")
    if b"query=" in query_string or b"extensions=" in query_string:  # an operation (or an APQ hash)
        return False
    accept = _header(scope, b"accept") or ""
    return "text/html" in accept or "*/*" in accept


def rejection(
    scope: Scope, status: int, code: str, message: str, headers: dict[str, str]
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A 401/429/403 body in the shape of the endpoint: GraphQL errors (in the media type the
    request's Accept negotiates, web/media.py) or the REST error object."""
    extensions: dict[str, Any] = {"code": code}
    if code == "UNAUTHENTICATED":
        extensions["reason"] = message
    body: dict[str, Any]
    media = b"application/json"
    if scope["path"].startswith("/graphql"):
        body = {"errors": [{"message": _sentence(code, message), "extensions": extensions}]}
        media = content_type(negotiate(_header(scope, b"accept"))).encode()
    else:
        body = {"error": {"code": code, "message": _sentence(code, message)}}
    raw = orjson.dumps(body)
    header_list = [(b"content-type", media), (b"content-length", str(len(raw)).encode())]
    header_list += [(k.encode(), v.encode()) for k, v in headers.items()]
    return raw, header_list


def _sentence(code: str, message: str) -> str:
    if code == "UNAUTHENTICATED":
        return f"Unauthenticated: {message}."
    return message


async def send_rejection(
    scope: Scope, send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """Answer ``status`` with the error body of ``rejection`` (the middleware's refusals and the
    GraphQL endpoint's alike)."""
    raw, header_list = rejection(scope, status, code, message, headers or {})
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": raw})


class ApiMiddleware:
    """Pure ASGI middleware (no per-request task or body buffering on the hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            elif scope["type"] == "websocket" and scope["path"] in WEBSOCKET_PATHS:
                # The WebSocket endpoint authenticates its own connections (connection_init).
                await self.app(scope, receive, send)
            elif scope["type"] == "websocket":
                await self._refuse_websocket(receive, send)
            return
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
        started_holder = [False]
        viewer: Viewer | None = None

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                started_holder[0] = True
                status_holder[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            limit = api.settings.max_body_bytes
            declared = _content_length(scope)
            if declared is not None and (declared < 0 or declared > limit):
                state["operation"] = "rejected"
                if declared < 0:
                    await send_rejection(scope, send_with_id, 400, "BAD_REQUEST",
                                         "Content-Length is not a number")
                else:
                    await self._too_large(scope, send_with_id, limit)
                return
            if declared is None:
                receive = limited_receive(receive, limit)
            operation = OPEN_PATHS.get(path)
            authorization = _header(scope, b"authorization")
            if operation is None and path.startswith(ASSET_PREFIX):
                # Static bytes from memory, cached a year by URL: not rate limited, so a page
                # load is never cut between its page and its scripts (a blank GraphiQL).
                operation = "graphiql"
            if operation is None and path == "/graphql" and _is_graphiql_page(scope):
                operation = "graphiql"
                verdict = await api.rate_limiter.hit(f"ip:{client}", anonymous=True)
                if not verdict.allowed:
                    state["operation"] = "rate_limited"
                    await self._too_many(scope, send_with_id, api, verdict.retry_after, "anonymous")
                    return
            if operation is None and path == "/metrics":
                operation = "metrics"
                if not (api.settings.metrics_public or is_loopback(client)):
                    viewer = await self._admit(scope, send_with_id, api, authorization, client)
                    if viewer is None:
                        return
                    if viewer.role is not Role.ADMIN:
                        await send_rejection(scope, send_with_id, 403, "FORBIDDEN",
                                             "metrics need an admin token")
                        return
            if operation is None:
                viewer = await self._admit(scope, send_with_id, api, authorization, client)
                if viewer is None:
                    return
                state["viewer"] = viewer
            state["operation"] = operation
            try:
                await self.app(scope, receive, send_with_id)
            except BodyTooLarge:
                state["operation"] = "rejected"
                if not started_holder[0]:
                    await self._too_large(scope, send_with_id, limit)
            except ClientDisconnect:
                status_holder[0] = 499  # the client went away mid-body: nothing to answer
            except DatabaseUnavailable:
                if not started_holder[0]:
                    await send_rejection(scope, send_with_id, 503, "SERVICE_UNAVAILABLE", UNAVAILABLE_MESSAGE)
            except Exception:
                # A bug: logged (database values scrubbed, web/access_log.py) and answered
                # without a traceback; the server sees a finished request.
                log.error("unexpected error serving %s %s", scope["method"], path, exc_info=True)
                if not started_holder[0]:
                    await send_rejection(scope, send_with_id, 500, "INTERNAL_SERVER_ERROR",
                                         "Unexpected error.")
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
            await send_rejection(
                scope, send, 401, "UNAUTHENTICATED", exc.reason,
                {"www-authenticate": f'Bearer error="invalid_token", error_description="{exc.reason}"'},
            )
            return None
        if viewer.role is Role.AFFILIATE and viewer.affiliate_id is not None:
            try:
                suspended = await api.accounts.suspended(viewer.affiliate_id)
            except (DatabaseUnavailable, TimeoutError):
                state["operation"] = "unavailable"
                await send_rejection(scope, send, 503, "SERVICE_UNAVAILABLE", UNAVAILABLE_MESSAGE)
                return None
            if suspended:
                state["operation"] = "suspended"
                await send_rejection(scope, send, 403, "ACCOUNT_SUSPENDED",
                                     "This affiliate account is suspended")
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
        await send_rejection(
            scope, send, 429, "RATE_LIMITED", f"Too many requests; retry in {retry_after} s",
            {"retry-after": str(retry_after)},
        )

    async def _too_large(self, scope: Scope, send: Send, limit: int) -> None:
        await send_rejection(scope, send, 413, "PAYLOAD_TOO_LARGE",
                             f"The request body is larger than {limit} bytes", {"connection": "close"})

    @staticmethod
    async def _refuse_websocket(receive: Receive, send: Send) -> None:
        """No WebSocket endpoint on this path: the handshake is closed with 1008 (policy
        violation), which the server answers HTTP 403."""
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008, "reason": ""})

