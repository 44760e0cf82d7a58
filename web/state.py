"""What the app's lifespan builds once and every request shares (``ApiState``), and the
per-request context the edge hands to GraphQL (``RequestContext``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from strawberry.types import ExecutionResult

from db.reader import Database
from db.settings import Settings
from resolvers.context import Context
from resolvers.viewer import Viewer
from web.access_log import scrub_database_errors
from web.accounts import AccountStatus
from web.auth import Authenticator
from web.freshness import Freshness, Snapshot
from web.metrics import Metrics
from web.persisted import PersistedOperations
from web.ratelimit import RateLimiter
from web.response_cache import Compute, ResponseCache, execute_cached


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

    def __post_init__(self) -> None:
        scrub_database_errors()  # the API's logs never hold bound values (idempotent)
        self.authenticator = Authenticator(self.settings)
        self.rate_limiter = RateLimiter(self.settings)
        self.response_cache = ResponseCache(self.settings, self.metrics)
        # The trusted documents manifest, checked and pre-warmed here: a bad one stops the start.
        self.persisted = PersistedOperations(self.settings)
        self.freshness = Freshness(self.database, self.metrics)
        self.accounts = AccountStatus(self.database, self.settings.account_status_cache_seconds)

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

    @classmethod
    def build(
        cls, api: ApiState, viewer: Viewer, request: Any = None, response: Any = None
    ) -> RequestContext:
        return cls(settings=api.settings, database=api.database, robust_url=api.robust_url, viewer=viewer,
                   api=api, request=request, response=response, snapshot=api.freshness.snapshot)

    async def execute_cached(
        self, query: str | None, variables: dict[str, Any] | None, operation_name: str | None,
        compute: Compute,
    ) -> ExecutionResult:
        """``compute()`` through the response cache, for this viewer and this data generation."""
        result, self.cache_status = await execute_cached(
            self.api.response_cache, self.viewer.scope_key, self.snapshot.generation,
            query, variables, operation_name, compute,
        )
        return result


class NotAuthenticated(RuntimeError):
    """A request reached the API without passing the middleware (a wiring bug): fail closed."""


def viewer_for(request: Any) -> Viewer:
    """The viewer the middleware verified for ``request`` (web/middleware.py)."""
    viewer = request.scope.get("state", {}).get("viewer")
    if not isinstance(viewer, Viewer):
        raise NotAuthenticated("request without a verified viewer")
    return viewer
