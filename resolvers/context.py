"""The per-request context every resolver receives as ``info.context``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from db.settings import Settings
from resolvers.access import DataAccess, Database, Viewer
from resolvers.loaders import Loaders


@dataclass
class ApiState:
    """What the app's lifespan builds once and every request shares (``app.state.api``)."""

    settings: Settings
    robust_url: str
    database: Database

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)


@dataclass
class Context:
    api: ApiState
    viewer: Viewer = field(default_factory=Viewer)
    request: Any = None
    response: Any = None

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


def viewer_for(request: Any) -> Viewer:
    """Who sends ``request``. Authentication (JWT) replaces this later; today: allow all."""
    return Viewer()
