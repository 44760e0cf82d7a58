"""What the app's lifespan builds once and every request shares (``ApiState``), and the
per-request context the edge hands to GraphQL (``RequestContext``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from graphql import GraphQLError, OperationDefinitionNode, OperationType
from strawberry.types import ExecutionResult

from db.reader import Database, open_database
from db.replicas import ReadNode, ReadNodes
from db.settings import Settings
from db.snapshot import RecoveryConflict, SnapshotReads
from resolvers.context import Context
from resolvers.viewer import Viewer
from schema.documents import parsed_document
from web.access_log import scrub_database_errors
from web.accounts import AccountStatus
from web.auth import Authenticator
from web.freshness import Freshness, Snapshot
from web.metrics import Metrics
from web.persisted import PersistedOperations
from web.ratelimit import RateLimiter
from web.response_cache import Compute, ResponseCache, execute_cached, peek

# Answers' transactions being ended in the background (a strong reference until done).
_ENDING: set[asyncio.Task[None]] = set()


@dataclass
class ApiState:
    """Built once by the lifespan (``app.state.api``)."""

    settings: Settings
    robust_url: str
    database: Database
    metrics: Metrics = field(default_factory=Metrics)
    authenticator: Authenticator = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    response_cache: ResponseCache = field(init=False)
    persisted: PersistedOperations = field(init=False)
    freshness: Freshness = field(init=False)
    accounts: AccountStatus = field(init=False)
    nodes: ReadNodes = field(init=False)

    def __post_init__(self) -> None:
        scrub_database_errors()  # the API's logs never hold bound values (idempotent)
        self.authenticator = Authenticator(self.settings)
        self.rate_limiter = RateLimiter(self.settings)
        self.response_cache = ResponseCache(self.settings, self.metrics)
        # The trusted documents manifest, checked and pre-warmed here: a bad one stops the start.
        self.persisted = PersistedOperations(self.settings)
        self.freshness = Freshness(self.database, self.metrics)
        self.accounts = AccountStatus(self.database, self.settings.account_status_cache_seconds)
        # The read nodes: the replicas of FATURE_DATABASE_READ_URLS (their own connections), else
        # the primary alone. A new primary generation makes the checks look at once.
        self.nodes = ReadNodes(
            self.database, {url: open_database(url, self.settings) for url in self.settings.read_urls},
            max_lag_seconds=self.settings.replica_max_lag_seconds,
            check_seconds=self.settings.replica_check_seconds,
        )
        self.nodes.check_listeners.append(self.metrics.replicas_checked)
        self.freshness.advance_listeners.append(lambda run_id, _as_of: self.nodes.poke(run_id))

    def node_snapshot(self, node: ReadNode) -> Snapshot:
        """What answers read on ``node`` are as of, before they read: the primary's generation,
        or the last ETL run the replica was seen to hold (never newer than it holds)."""
        if node.primary:
            return self.freshness.snapshot
        return Snapshot(node.run_id, node.as_of, node.as_of.isoformat() if node.as_of is not None else None)

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)


@dataclass
class RequestContext(Context):
    """The resolvers' context plus what the edge keeps per request."""

    api: ApiState = field(default=None)  # type: ignore[assignment]
    request: Any = None
    response: Any = None
    snapshot: Snapshot = field(default=None)  # type: ignore[assignment]
    cache_status: str | None = None
    node: ReadNode = field(default=None)  # type: ignore[assignment]
    _answering: int = 0  # execute_cached calls in flight (a batch's members)

    @classmethod
    def build(
        cls, api: ApiState, viewer: Viewer, request: Any = None, response: Any = None
    ) -> RequestContext:
        # Statement by statement on the primary until ``execute_cached`` chooses the answer's node
        # and snapshot (and ends it): paths that answer without it (exports) read as before.
        node = api.nodes.primary
        return cls(settings=api.settings, database=SnapshotReads(node.database, autocommit=True),
                   robust_url=api.robust_url, viewer=viewer, api=api, request=request, response=response,
                   snapshot=api.freshness.snapshot, node=node)

    @property
    def reads(self) -> SnapshotReads:
        assert isinstance(self.database, SnapshotReads)
        return self.database

    def _read_on(self, node: ReadNode, *, autocommit: bool = False) -> None:
        """Read the rest of this answer on ``node`` (new loaders: nothing cached from elsewhere)."""
        self.node = node
        self.database = SnapshotReads(node.database, autocommit=autocommit)
        self.snapshot = self.api.node_snapshot(node)
        for name in ("access", "loaders"):
            self.__dict__.pop(name, None)

    async def cached_data(
        self, query: str | None, variables: dict[str, Any] | None, operation_name: str | None
    ) -> str | None:
        """The response cache's answer (the JSON of its ``data``) for a query, looked up exactly
        as ``execute_cached`` would (the node it would read, that node's generation); None when
        there is none (nothing is counted then: ``execute_cached`` looks again)."""
        if self._answering == 0:
            self._read_on(self.api.nodes.choose())
        raw = await peek(self.api.response_cache, self.viewer.scope_key, self.snapshot.generation,
                         query, variables, operation_name)
        if raw is not None:
            self.cache_status = "hit"
        return raw

    def read_again(self) -> None:
        """Drop what this answer read so far (a compiled plan's statement that was not used):
        the general path reads on the same node in a snapshot of its own."""
        self._read_on(self.node)

    async def execute_cached(
        self, query: str | None, variables: dict[str, Any] | None, operation_name: str | None,
        compute: Compute,
    ) -> ExecutionResult:
        """``compute()`` through the response cache, for this viewer and the data generation of
        the node it reads; the answer's reads in one snapshot (db/snapshot.py), its ``asOf`` the
        ETL run that snapshot holds. A mutation reads the primary after its writes; an answer a
        replica failed (down, recovery conflict) is computed once more on another node."""
        # The members of a batch run concurrently on this one context (and its loaders): they
        # share its reads, chosen by the first and ended when the last one is done.
        if self._answering == 0:
            if is_mutation(query, operation_name, self.settings.max_tokens):
                self._read_on(self.api.nodes.primary, autocommit=True)
            else:
                self._read_on(self.api.nodes.choose())
        self._answering += 1
        generation = self.snapshot.generation

        async def computed() -> ExecutionResult:
            result = await self._compute_once(compute)
            alone = self._answering == 1  # no other member is reading through self.reads
            if alone and self.reads.node_failed and not self.node.primary:
                failed = self.node
                self.api.metrics.read_retries.labels(failed.name).inc()
                conflict = any(isinstance(getattr(e, "original_error", None), RecoveryConflict)
                               for e in result.errors or ())
                self.api.nodes.failed(failed, "recovery conflict" if conflict else "unavailable")
                await self.reads.close()
                self._read_on(self.api.nodes.other_than(failed))
                result = await self._compute_once(compute)
            return result

        def same_generation() -> bool:
            # Stored under the key's generation only when it read exactly that ETL run.
            return not self.reads.read or (self.reads.run_id or 0) == generation

        try:
            result, self.cache_status = await execute_cached(
                self.api.response_cache, self.viewer.scope_key, generation,
                query, variables, operation_name, computed, keep=same_generation,
            )
        finally:
            self._answering -= 1
            # The answer's transactions end after it is sent (their ROLLBACKs add no latency).
            reads = self.reads
            if self._answering == 0 and reads.holding:
                ending = asyncio.get_running_loop().create_task(reads.close())
                _ENDING.add(ending)
                ending.add_done_callback(_ENDING.discard)
        return result

    async def _compute_once(self, compute: Compute) -> ExecutionResult:
        result = await compute()
        reads = self.reads
        if reads.read:
            run_id = reads.run_id or 0
            self.snapshot = Snapshot(run_id, reads.as_of,
                                     reads.as_of.isoformat() if reads.as_of is not None else None)
        self.api.metrics.node_reads.labels(self.node.name).inc()
        return result


def is_mutation(query: str | None, operation_name: str | None, max_tokens: int) -> bool:
    """Whether the request runs a mutation (only documents that mention one are parsed, from
    the shared parse cache)."""
    if not query or "mutation" not in query:
        return False
    try:
        document = parsed_document(query, max_tokens).document
    except GraphQLError:
        return False
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    return len(operations) == 1 and operations[0].operation is OperationType.MUTATION


class NotAuthenticated(RuntimeError):
    """A request reached the API without passing the middleware (a wiring bug): fail closed."""


def viewer_for(request: Any) -> Viewer:
    """The viewer the middleware verified for ``request`` (web/middleware.py)."""
    viewer = request.scope.get("state", {}).get("viewer")
    if not isinstance(viewer, Viewer):
        raise NotAuthenticated("request without a verified viewer")
    return viewer
