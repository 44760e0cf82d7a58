"""GraphQL subscriptions on /graphql over a WebSocket, in the graphql-transport-ws protocol (the
one of graphql-ws, Apollo Client and urql): strawberry's handler, with Fature's rules.

- **Handshake**: only the ``graphql-transport-ws`` subprotocol; without it the handshake is
  refused (HTTP 403). A browser page must come from the same origin or one CORS allows
  (``FATURE_CORS_ORIGINS`` / ``FATURE_CORS_ORIGIN_REGEX``).
- **Authentication** in ``connection_init``'s payload: ``{"Authorization": "Bearer <jwt>"}``
  (also ``authorization``, ``token``, or ``headers.Authorization``), verified by the same
  ``Authenticator`` as HTTP; a suspended affiliate is refused as over HTTP. Refusals close
  with 4403 and a reason ("Forbidden: token expired"); no ``connection_init`` within
  ``FATURE_WS_CONNECTION_INIT_TIMEOUT_SECONDS`` closes with 4408; a ``subscribe`` before the
  acknowledgement with 4401. When the token's ``exp`` (plus the leeway HTTP allows) passes,
  the connection closes with 4403 "Forbidden: token expired" (a graphql-ws client reconnects
  with fresh ``connectionParams``).
- **Limits**: ``FATURE_WS_MAX_CONNECTIONS_PER_TOKEN`` open connections per token subject
  (more: close 4429) and ``FATURE_WS_MAX_SUBSCRIPTIONS_PER_TOKEN`` live subscriptions (more:
  an ``error`` message with code ``SUBSCRIPTION_LIMIT``), across processes through Redis when
  configured (web/live.py). Each ``subscribe`` counts against the token's rate limit like a
  request (``RATE_LIMITED``). The document passes the same limits as over HTTP (size, depth,
  aliases, tokens, cost). Only subscriptions: queries and mutations go over HTTP.
- **Heartbeats**: the server pings every ``FATURE_WS_PING_SECONDS``; a client that has not
  answered the previous ping by the next one is closed (1001). Client pings are answered.

Every error a client sees is coded and unexpected ones masked, as over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jwt
import orjson
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import GraphQL
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.http.websocket_origin import normalize_origin
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    PongMessage,
    SubscribeMessage,
)

from db.engine import DatabaseUnavailable
from db.settings import Settings
from resolvers.viewer import Role, Viewer
from web.auth import AuthError
from web.errors import Rejected
from web.live import CommitFeed, CommitHub, LiveUpdates
from web.persisted import resolve_document
from web.state import ApiState, RequestContext
from web.subscription_documents import SubscriptionsOnly, root_field

log = logging.getLogger("fature.api")

FORBIDDEN, TOO_MANY, UNAVAILABLE, NO_PONG = 4403, 4429, 1013, 1001


@dataclass
class SubscriptionContext(RequestContext):
    """One subscription's context: the resolvers' context for the connection's viewer, the
    feed of commits, and fresh loaders for each push (``renew``)."""

    hub: CommitHub = field(default=None)  # type: ignore[assignment]

    def commits(self) -> CommitFeed:
        return self.hub.feed()

    def renew(self) -> None:
        for cached in ("access", "loaders"):  # cached_property values of Context
            self.__dict__.pop(cached, None)
        self.snapshot = self.api.freshness.snapshot


def _authorization(payload: dict[str, Any]) -> str | None:
    """The ``Authorization`` value a connection_init payload carries, in its accepted spellings."""
    headers = payload.get("headers")
    places = [payload, headers] if isinstance(headers, dict) else [payload]
    for place in places:
        for name in ("Authorization", "authorization"):
            value = place.get(name)
            if isinstance(value, str):
                return value if " " in value.strip() else f"Bearer {value.strip()}"
    token = payload.get("token")
    return f"Bearer {token}" if isinstance(token, str) else None


def _expiry(authorization: str) -> float:
    """The verified token's ``exp`` (the Authenticator checked signature and claims)."""
    token = authorization.partition(" ")[2].strip()
    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


class Connection:
    """One WebSocket: its viewer once admitted, its slots and its timers. The handler's
    ``context``; each subscription gets its own ``SubscriptionContext`` from it."""

    def __init__(self, api: ApiState, live: LiveUpdates, websocket: WebSocket) -> None:
        self.api, self.live, self.websocket = api, live, websocket
        self.id = uuid.uuid4().hex
        self.viewer: Viewer | None = None
        self.expires = 0.0
        self.closed = False
        self.timers: set[asyncio.Task[Any]] = set()
        self.chores: set[asyncio.Task[Any]] = set()
        self.subscriptions: dict[str, str] = {}  # operation id -> its root field (metrics label)

    @property
    def client(self) -> str:
        return (self.websocket.scope.get("client") or ("unknown", 0))[0]

    async def admit(self, payload: dict[str, Any]) -> tuple[int, str] | None:
        """Authenticate the connection_init payload; None, or the close code and reason."""
        api = self.api
        authorization = _authorization(payload)
        try:
            viewer = api.authenticator.authenticate(authorization)
            assert authorization is not None
            expires = _expiry(authorization)
        except AuthError as exc:
            api.metrics.auth_failures.labels(exc.reason).inc()
            await api.rate_limiter.hit(f"ip:{self.client}", anonymous=True)
            return FORBIDDEN, f"Forbidden: {exc.reason}"
        if viewer.role is Role.AFFILIATE and viewer.affiliate_id is not None:
            try:
                if await api.accounts.suspended(viewer.affiliate_id):
                    return FORBIDDEN, "Forbidden: this affiliate account is suspended"
            except (DatabaseUnavailable, TimeoutError):
                return UNAVAILABLE, "The database is unavailable; try again later"
        limit = api.settings.ws_max_connections_per_token
        if not await self.live.slots.acquire("connections", viewer.subject, self.id, limit):
            return TOO_MANY, f"Too many connections for this token (at most {limit})"
        self.viewer, self.expires = viewer, expires
        return None

    def operation_context(self) -> SubscriptionContext:
        api = self.api
        assert self.viewer is not None
        return SubscriptionContext(settings=api.settings, database=api.database, robust_url=api.robust_url,
                                   viewer=self.viewer, api=api, snapshot=api.freshness.snapshot,
                                   hub=self.live.hub)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):  # already closed by the client
            await self.websocket.close(code=code, reason=reason)

    def spawn(self, work: Any, *, timer: bool = False) -> None:
        """Background work of the connection: timers are cancelled when it ends, the rest
        (releasing slots) awaited."""
        task = asyncio.get_running_loop().create_task(_guarded(work))
        tasks = self.timers if timer else self.chores
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def end(self) -> None:
        """Release everything the connection held (its subscriptions' slots too)."""
        for task in list(self.timers):
            task.cancel()
        for task in [*self.timers, *self.chores]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for operation_id in list(self.subscriptions):
            await self.release(operation_id)
        if self.viewer is not None:
            await self.live.slots.release("connections", self.viewer.subject, self.id)

    async def release(self, operation_id: str) -> None:
        root = self.subscriptions.pop(operation_id, None)
        if root is None or self.viewer is None:
            return
        self.api.metrics.subscriptions.labels(root).dec()
        await self.live.slots.release("subscriptions", self.viewer.subject, f"{self.id}:{operation_id}")


async def _guarded(work: Any) -> None:
    """A connection's background work: a client gone away ends it quietly, a bug is logged."""
    try:
        await work
    except (WebSocketDisconnected, WebSocketDisconnect):
        pass
    except Exception:
        log.error("unexpected error in a GraphQL WebSocket task", exc_info=True)


def _error(operation_id: str, code: str, message: str) -> Any:
    return {"id": operation_id, "type": "error",
            "payload": [{"message": message, "extensions": {"code": code}}]}


class FatureTransportWSHandler(BaseGraphQLTransportWSHandler[Connection, None]):
    """Strawberry's graphql-transport-ws handler plus authentication, limits, heartbeats and
    the token's expiry."""

    awaiting_pong = False

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            await self.context.end()
            self.context.api.metrics.websockets.dec()

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            await self.context.close(4400, "Invalid connection init payload")
            return
        if self.connection_init_received:
            await self.context.close(4429, "Too many initialisation requests")
            return
        self.connection_init_received = True
        refusal = await self.context.admit(payload)
        if refusal is not None:
            await self.context.close(*refusal)
            return
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True
        self.context.spawn(self._expire(), timer=True)
        if self.context.viewer is not None and self.context.viewer.role is Role.AFFILIATE:
            self.context.spawn(self._watch_suspension(), timer=True)
        if self.context.api.settings.ws_ping_seconds > 0:
            self.context.spawn(self._heartbeat(self.context.api.settings.ws_ping_seconds), timer=True)

    async def _expire(self) -> None:
        leeway = self.context.api.settings.jwt_leeway_seconds
        await asyncio.sleep(max(0.0, self.context.expires + leeway - time.time()))
        await self.context.close(FORBIDDEN, "Forbidden: token expired")

    async def _watch_suspension(self) -> None:
        """An affiliate suspended while connected is closed: its status changes with an ETL
        commit, so it is read again (not from the cache) after each one."""
        connection = self.context
        assert connection.viewer is not None and connection.viewer.affiliate_id is not None
        affiliate_id, accounts = connection.viewer.affiliate_id, connection.api.accounts
        with connection.live.hub.feed() as commits:
            async for _commit in commits:
                accounts.entries.pop(affiliate_id, None)
                try:
                    suspended = await accounts.suspended(affiliate_id)
                except (DatabaseUnavailable, TimeoutError):
                    continue  # checked again after the next commit
                if suspended:
                    await connection.close(FORBIDDEN, "Forbidden: this affiliate account is suspended")
                    return

    async def _heartbeat(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            if self.awaiting_pong:
                await self.context.close(NO_PONG, f"No pong within {seconds:g} s")
                return
            self.awaiting_pong = True
            await self.send_message({"type": "ping"})

    async def handle_pong(self, message: PongMessage) -> None:
        self.awaiting_pong = False

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        connection = self.context
        payload = message.get("payload")
        operation_id = message.get("id")
        if (not self.connection_acknowledged or not isinstance(operation_id, str)
                or operation_id in self.operations or not isinstance(payload, dict)
                or not isinstance(payload.get("query"), str | None)
                or not isinstance(payload.get("extensions"), dict | None) or connection.viewer is None):
            await super().handle_subscribe(message)  # the protocol's closes (4401, 4409, 4400)
            return
        api, viewer = connection.api, connection.viewer
        verdict = await api.rate_limiter.hit(f"sub:{viewer.subject}", anonymous=False)
        if not verdict.allowed:
            api.metrics.rate_limited.labels("token").inc()
            await self.send_message(_error(operation_id, "RATE_LIMITED",
                                           f"Too many requests; retry in {verdict.retry_after} s"))
            return
        try:  # trusted documents and persisted queries: the rules of /graphql (web/persisted.py)
            payload["query"] = await resolve_document(api, viewer, payload.get("query"),
                                                      payload.get("extensions"))
        except Rejected as refusal:
            await self.send_message(_error(operation_id, refusal.code, refusal.message))
            return
        limit = api.settings.ws_max_subscriptions_per_token
        slot = f"{connection.id}:{operation_id}"
        if not await connection.live.slots.acquire("subscriptions", viewer.subject, slot, limit):
            await self.send_message(_error(operation_id, "SUBSCRIPTION_LIMIT",
                                           f"Too many subscriptions for this token (at most {limit})"))
            return
        root = root_field(payload["query"], payload.get("operationName"), api.settings)
        connection.subscriptions[operation_id] = root
        api.metrics.subscriptions.labels(root).inc()
        await super().handle_subscribe(message)
        operation = self.operations.get(operation_id)
        if operation is None or operation.task is None:
            await connection.release(operation_id)
            return
        operation.task.add_done_callback(lambda _: connection.spawn(connection.release(operation_id)))

    async def send_message(self, message: Any) -> None:
        websocket = self.context.websocket
        if not self.context.closed and websocket.application_state is WebSocketState.CONNECTED:
            await self.websocket.send_json(message)


class FatureSubscriptions(GraphQL[Connection, None]):
    """The WebSocket side of /graphql (the HTTP side is web/graphql.py)."""

    graphql_transport_ws_handler_class = FatureTransportWSHandler
    protocols = (GRAPHQL_TRANSPORT_WS_PROTOCOL,)

    def __init__(self, schema: BaseSchema, settings: Settings) -> None:
        super().__init__(
            SubscriptionsOnly(schema),  # type: ignore[arg-type]
            graphql_ide=None, subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.ws_connection_init_timeout_seconds),
            max_subscriptions_per_connection=settings.ws_max_subscriptions_per_token,
        )
        self.settings = settings
        self._origin_regex = re.compile(settings.cors_origin_regex) if settings.cors_origin_regex else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        if GRAPHQL_TRANSPORT_WS_PROTOCOL not in scope.get("subprotocols", ()):
            # Refused before accepting (HTTP 403): this endpoint speaks graphql-transport-ws only.
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008, "reason": ""})
            return
        websocket = WebSocket(scope, receive=receive, send=send)
        try:
            await self.run(websocket)
        except Exception:  # a bug: logged, the client sees a close, never a traceback
            log.error("unexpected error serving a GraphQL WebSocket", exc_info=True)
            with contextlib.suppress(Exception):
                await websocket.close(code=1011, reason="Unexpected error")

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        normalized = normalize_origin(origin)
        if normalized is None:
            return False
        allowed = self.settings.cors_origins
        return ("*" in allowed or normalized in allowed
                or (self._origin_regex is not None and self._origin_regex.fullmatch(normalized) is not None))

    async def get_context(self, request: Any, response: Any) -> Connection:
        state = request.app.state
        state.api.metrics.websockets.inc()
        return Connection(state.api, state.live, response)

    def encode_json(self, data: object) -> str:
        return orjson.dumps(data).decode()  # text frames: what graphql-ws clients read

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)
