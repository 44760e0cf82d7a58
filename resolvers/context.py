"""The per-request context every resolver receives as ``info.context``: who asks, the robust
database seen through that viewer, and the request's DataLoaders.

The HTTP edge builds it (``web.state.RequestContext`` adds what only the edge needs: the
request, the response cache's status, the data's as-of snapshot)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo

from db.reader import Reader
from db.settings import Settings
from resolvers.loaders import Loaders
from resolvers.viewer import DataAccess, Viewer


@dataclass
class Context:
    settings: Settings
    database: Reader
    robust_url: str
    viewer: Viewer

    @cached_property
    def access(self) -> DataAccess:
        return DataAccess(self.database, self.viewer)

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self.access)

    @property
    def zone(self) -> ZoneInfo:
        """The business time zone (days, weeks, months and years are local to it)."""
        return ZoneInfo(self.settings.timezone)

    @property
    def max_page_size(self) -> int:
        return self.settings.max_page_size
