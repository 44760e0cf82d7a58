"""Whether an affiliate's account may still use the API: a token outlives a suspension, so
the middleware asks here, right after authentication, and refuses a suspended affiliate
(403 ``ACCOUNT_SUSPENDED``).

The status is the robust database's ``affiliates.status`` (the ETL copies it from the
operation database each cycle), read with one indexed lookup and kept per affiliate for
``FATURE_ACCOUNT_STATUS_CACHE_SECONDS``: a suspension takes effect at the ETL's next cycle
plus at most those seconds. A database outage raises ``DatabaseUnavailable`` (the middleware
answers 503); nothing is cached then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from db.reader import Database, sql

SUSPENDED = "suspended"
_STATUS = sql("SELECT status FROM affiliates WHERE affiliate_id = :affiliate_id")
MAX_ENTRIES = 100_000  # bounds the memory of the cache (one small tuple an affiliate)


class AccountStatus:
    """A per-affiliate TTL cache of ``affiliates.status`` in front of the robust database."""

    def __init__(self, database: Database, ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.database = database
        self.ttl = ttl_seconds
        self.clock = clock
        self.entries: dict[int, tuple[float, str | None]] = {}

    async def status(self, affiliate_id: int) -> str | None:
        """The affiliate's status (None: unknown to the robust database)."""
        now = self.clock()
        cached = self.entries.get(affiliate_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        rows = await self.database.fetch(_STATUS, {"affiliate_id": affiliate_id})
        status = rows[0].status if rows else None
        if self.ttl > 0:
            if len(self.entries) >= MAX_ENTRIES:
                self.entries = {k: v for k, v in self.entries.items() if v[0] > now}
                if len(self.entries) >= MAX_ENTRIES:
                    self.entries.clear()
            self.entries[affiliate_id] = (now + self.ttl, status)
        return status

    async def suspended(self, affiliate_id: int) -> bool:
        return await self.status(affiliate_id) == SUSPENDED
