"""The per-request context every resolver receives as ``info.context``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from db.settings import Settings
from resolvers.access import DataAccess, Database, Viewer
from resolvers.auth import Authenticator
from resolvers.freshness import Freshness, Snapshot
from resolvers.loaders import Loaders
from resolvers.metrics import Metrics
from resolvers.ratelimit import RateLimiter
from resolvers.response_cache import ResponseCache


@dataclass
class ApiState:
    """What the app's lifespan builds once and every request shares (``app.state.api``)."""

    settings: Settings
    robust_url: str
    database: Database
    metrics: Metrics = field(default_factory=Metrics)
    authenticator: Authenticator = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    response_cache: ResponseCache = field(init=False)
    freshness: Freshness = field(init=False)

    def __post_init__(self) -> None:
        self.authenticator = Authenticator(self.settings)
        self.rate_limiter = RateLimiter(self.settings)
        self.response_cache = ResponseCache(self.settings, self.metrics)
        self.freshness = Freshness(self.database, self.metrics)

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)


@dataclass
class Context:
    api: ApiState
    viewer: Viewer
    request: Any = None
    response: Any = None
    snapshot: Snapshot = field(default=None)  # type: ignore[assignment]
    cache_status: str | None = None

    def __post_init__(self) -> None:
        if self.snapshot is None:
            self.snapshot = self.api.freshness.snapshot

    @cached_property
    def access(self) -> DataAccess:
        return DataAccess(self.api.database, self.viewer)

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self.access)

    @property
    def settings(self) -> Settings:
        return self.api.settings

    @property
    def max_page_size(self) -> int:
        return self.api.settings.max_page_size


class NotAuthenticated(RuntimeError):
    """A request reached the API without passing the door (a wiring bug): fail closed."""


def viewer_for(request: Any) -> Viewer:
    """The viewer the door verified for ``request`` (resolvers/door.py)."""
    viewer = request.scope.get("state", {}).get("viewer")
    if not isinstance(viewer, Viewer):
        raise NotAuthenticated("request without a verified viewer")
    return viewer
