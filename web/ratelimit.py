"""Rate limiting with the ``limits`` library: a sustained rate and a burst cap per token
subject, a rate per IP for requests without a valid token; shared through Redis when
``FATURE_REDIS_URL`` is set, in memory otherwise. Redis down: limits are kept in memory
(per process) until it answers again, logged once."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from db.settings import Settings

log = logging.getLogger("fature.api")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0


ALLOWED = Verdict(True)


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.per_token: tuple[RateLimitItem, ...] = (
            parse(settings.rate_limit), parse(settings.rate_limit_burst)
        )
        self.per_ip: tuple[RateLimitItem, ...] = (parse(settings.rate_limit_anonymous),)
        self._retry_seconds = settings.cache_retry_seconds
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared: SlidingWindowCounterRateLimiter | None = None
        self._down_until = 0.0
        if settings.redis_url:
            uri = settings.redis_url
            uri = uri if uri.startswith("async+") else "async+" + uri
            storage: Storage = RedisStorage(
                uri, implementation="redispy", key_prefix="fature:rl",
                socket_timeout=settings.cache_timeout_seconds,
                socket_connect_timeout=settings.cache_timeout_seconds,
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)

    def _strategy(self) -> SlidingWindowCounterRateLimiter:
        if self._shared is not None and time.monotonic() >= self._down_until:
            return self._shared
        return self._memory

    async def hit(self, key: str, anonymous: bool, cost: int = 1) -> Verdict:
        """Count ``cost`` requests for ``key``; a refusal says when to retry."""
        if not self.enabled:
            return ALLOWED
        items = self.per_ip if anonymous else self.per_token
        strategy = self._strategy()
        try:
            return await self._hit(strategy, items, key, cost)
        except Exception as exc:  # noqa: BLE001 - redis-py raises many kinds; never fail the request
            if strategy is self._memory:
                raise
            if self._down_until == 0.0:
                log.warning("rate limits kept in memory: Redis is unavailable (%s)", type(exc).__name__)
            self._down_until = time.monotonic() + self._retry_seconds
            return await self._hit(self._memory, items, key, cost)

    async def _hit(
        self, strategy: SlidingWindowCounterRateLimiter, items: tuple[RateLimitItem, ...], key: str, cost: int
    ) -> Verdict:
        for item in items:
            if not await strategy.hit(item, key, cost=cost):
                stats = await strategy.get_window_stats(item, key)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                return Verdict(False, min(wait, item.get_expiry()))
        if strategy is self._shared and self._down_until:
            self._down_until = 0.0
            log.warning("rate limits shared through Redis again")
        return ALLOWED
