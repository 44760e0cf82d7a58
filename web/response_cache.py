"""The response cache of hot read-only operations (the dashboard, ranking, summaries).

aiocache in memory by default, Redis when ``FATURE_REDIS_URL`` is set. An entry is keyed by
the normalised document, the operation name, the variables, the viewer's scope (one
viewer's answer is never served to another) and the generation (the last committed ETL
run: a commit makes older entries unreachable, and their TTL reclaims them). Concurrent
misses on one key are computed once in this process. Redis down: answers go uncached,
logged once, and the cache is tried again after ``cache_retry_seconds``.

GraphQL (``/graphql``) and REST run through ``execute_cached`` alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiocache import RedisCache, SimpleMemoryCache
from aiocache.base import BaseCache
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    print_ast,
)
from strawberry.types import ExecutionResult

from db.settings import Settings
from schema.document_cache import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    DocumentCache,
    document_bytes,
    document_digest,
    too_large,
)
from schema.documents import parsed_document
from web.metrics import Metrics

log = logging.getLogger("fature.api")

Compute = Callable[[], Awaitable[ExecutionResult]]

# GraphQL variables nest as deep as the schema's input types (a few levels); deeper JSON is
# refused by /graphql (400 BAD_REQUEST) and never keyed here.
MAX_VARIABLES_DEPTH = 32


def nested_deeper_than(value: object, limit: int) -> bool:
    """Whether JSON ``value`` nests objects/arrays more than ``limit`` levels (iteratively:
    no recursion, whatever the depth)."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[dict[Any, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        children = current.values() if isinstance(current, dict) else current
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


# A plan per distinct document (and operation name and root fields), keyed by the text's digest
# and bounded by bytes of document text; a document that does not parse is not kept.
PlanCache = DocumentCache[tuple[bytes, str | None, frozenset[str]], tuple[str | None]]


def cache_plan(
    query: str, operation_name: str | None, root_fields: frozenset[str], plans: PlanCache | None = None,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES, max_tokens: int | None = 2000,
) -> str | None:
    """The normalised document's digest when the operation may be cached, else None: a query
    (never a mutation) whose root fields are all hot read-only ones. A document over
    ``max_document_bytes`` is not parsed here (RequestLimits refuses it)."""
    if too_large(query, max_document_bytes):
        return None
    key = (document_digest(query), operation_name, root_fields)
    if plans is not None and (cached := plans.get(key)) is not None:
        return cached[0]
    try:
        # The schema's own parse (shared, cached by digest): one parse serves both.
        document = parsed_document(query, max_tokens).document
    except GraphQLError:  # strawberry reports the syntax error itself
        return None
    plan = _plan(document, operation_name, root_fields)
    if plans is not None:
        plans.put(key, (plan,), document_bytes(query))
    return plan


def _plan(document: DocumentNode, operation_name: str | None, root_fields: frozenset[str]) -> str | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if len(operations) != 1 or operations[0].operation is not OperationType.QUERY:
        return None
    for selection in operations[0].selection_set.selections:
        if not isinstance(selection, FieldNode):
            return None  # fragments at the root: not worth resolving here
        if selection.name.value not in root_fields and selection.name.value != "__typename":
            return None
    normalised = print_ast(document) + "\n#" + (operation_name or "")
    return hashlib.sha256(normalised.encode()).hexdigest()


def _backend(settings: Settings) -> BaseCache:
    if settings.redis_url:
        url = urlsplit(settings.redis_url)
        db = int(url.path.strip("/") or 0)
        return RedisCache(
            endpoint=url.hostname or "127.0.0.1", port=url.port or 6379, db=db, password=url.password,
            namespace="fature:rc", timeout=settings.cache_timeout_seconds,
            create_connection_timeout=settings.cache_timeout_seconds,
        )
    return SimpleMemoryCache(namespace="fature:rc", timeout=None)


class ResponseCache:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.enabled = settings.cache_enabled
        self.ttl = settings.cache_ttl_seconds
        self.root_fields = frozenset(settings.cache_root_fields)
        self.retry_seconds = settings.cache_retry_seconds
        self.metrics = metrics
        self.backend = _backend(settings) if self.enabled else None
        self.shared = bool(settings.redis_url)
        self.inflight: dict[str, asyncio.Future[ExecutionResult | None]] = {}
        self._down_until = 0.0
        self.plans: PlanCache = DocumentCache(settings.document_cache_bytes)
        self.max_document_bytes = settings.max_document_bytes
        self.max_tokens = settings.max_tokens

    def plan(self, query: str | None, operation_name: str | None) -> str | None:
        if not self.enabled or not query:
            return None
        return cache_plan(query, operation_name, self.root_fields, self.plans, self.max_document_bytes,
                          self.max_tokens)

    @staticmethod
    def key(digest: str, variables: dict[str, Any] | None, scope: str, generation: int) -> str | None:
        """The entry's key: a fixed-size digest of the document's digest, the viewer's scope and
        the variables' canonical JSON; None (answer uncached) for variables that cannot be
        encoded (nested deeper than ``MAX_VARIABLES_DEPTH``, which the endpoints refuse first,
        or not JSON at all)."""
        if nested_deeper_than(variables, MAX_VARIABLES_DEPTH):
            return None
        try:
            raw = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONEncodeError, TypeError):
            return None
        body = hashlib.sha256(digest.encode() + b"|" + scope.encode() + b"|" + raw).hexdigest()
        return f"{generation}:{body}"

    def _available(self) -> bool:
        return self.backend is not None and time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self.metrics.cache_errors.inc()
        if self._down_until == 0.0:
            log.warning("response cache unavailable, answering uncached: %s", type(exc).__name__)
        self._down_until = time.monotonic() + self.retry_seconds

    def _recovered(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            log.warning("response cache available again")

    async def get(self, key: str) -> str | None:
        if not self._available():
            return None
        assert self.backend is not None
        try:
            value = await self.backend.get(key)
        except Exception as exc:  # noqa: BLE001 - redis-py raises many kinds; answer uncached
            self._failed(exc)
            return None
        self._recovered()
        return value

    async def set(self, key: str, value: str) -> None:
        if not self._available():
            return
        assert self.backend is not None
        try:
            await self.backend.set(key, value, ttl=self.ttl)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    async def close(self) -> None:
        if self.backend is not None:
            try:
                await self.backend.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass


async def execute_cached(
    cache: ResponseCache, scope_key: str, generation: int, query: str | None,
    variables: dict[str, Any] | None, operation_name: str | None, compute: Compute,
    keep: Callable[[], bool] | None = None,
) -> tuple[ExecutionResult, str | None]:
    """``compute()`` through the cache when the operation is cacheable, for a viewer's scope
    and the data's generation; with the cache status ("hit", "miss", None: not cacheable).
    ``keep()``, asked after ``compute()``: false when the answer read other data than
    ``generation`` (a replica that replayed a newer run since it was last checked): it is
    neither stored nor handed to the requests waiting on the same key."""
    digest = cache.plan(query, operation_name)
    if digest is None:
        return await compute(), None
    key = cache.key(digest, variables, scope_key, generation)
    if key is None:
        return await compute(), None
    if (flight := cache.inflight.get(key)) is not None:
        return await _follow(flight, compute, cache), None
    raw = await cache.get(key)
    if raw is not None:
        cache.metrics.cache_hits.inc()
        return ExecutionResult(data=orjson.loads(raw), errors=None), "hit"
    if (flight := cache.inflight.get(key)) is not None:
        return await _follow(flight, compute, cache), None
    cache.metrics.cache_misses.inc()
    flight = asyncio.get_running_loop().create_future()
    cache.inflight[key] = flight
    result: ExecutionResult | None = None
    kept = False
    try:
        result = await compute()
        kept = keep is None or keep()
    finally:
        cache.inflight.pop(key, None)
        # None (the leader failed, or read another generation): followers compute themselves.
        flight.set_result(result if kept else None)
    if kept and not result.errors and result.data is not None:
        await cache.set(key, orjson.dumps(result.data).decode())
    return result, "miss"


async def peek(
    cache: ResponseCache, scope_key: str, generation: int, query: str | None,
    variables: dict[str, Any] | None, operation_name: str | None,
) -> str | None:
    """The stored answer's JSON (its ``data``) when there is one, counted as a hit; None
    otherwise, counted as nothing (``execute_cached`` then looks again and counts the miss)."""
    digest = cache.plan(query, operation_name)
    if digest is None:
        return None
    key = cache.key(digest, variables, scope_key, generation)
    if key is None or key in cache.inflight:
        return None
    raw = await cache.get(key)
    if raw is not None:
        cache.metrics.cache_hits.inc()
    return raw


async def _follow(
    flight: asyncio.Future[ExecutionResult | None], compute: Compute, cache: ResponseCache
) -> ExecutionResult:
    """Wait for the request already computing this key (single flight)."""
    cache.metrics.cache_hits.inc()
    result = await asyncio.shield(flight)
    return result if result is not None else await compute()
