"""The Starlette application, composed from the HTTP edge (``web/``): GraphQL at /graphql
(with GraphiQL), the REST compatibility endpoints and exports under /api/v1, /healthz,
/readyz and /metrics, all behind the request middleware (tokens, rate limits, metrics,
logs). The lifespan builds the engine, the cache and the freshness watch and, when asked
to, starts the ETL scheduler in-process."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute

from db import clock
from db.reader import open_database
from db.settings import Settings, get_settings
from etl import events
from jobs.scheduler import start_scheduler as start_etl_scheduler
from schema.root import schema
from web import graphiql, health, rest
from web.bus import CommitSubscriber
from web.cors import cors_middleware
from web.errors import ROUTE_ERROR_HANDLERS
from web.exports.streaming import routes as export_routes
from web.graphql import FatureGraphQL
from web.live import LiveUpdates
from web.middleware import ApiMiddleware
from web.state import ApiState
from web.subscriptions import FatureSubscriptions

log = logging.getLogger("fature.api")

# A request builds thousands of containers (rows, objects, result dicts) that live until it
# ends. With the default thresholds (700, 10, 10) the cyclic collector ran ~6 times during a
# 100-affiliate list, rescanning them and what startup built (modules, the schema): ~14% of
# that request's time. Startup's objects live as long as the process, so they are frozen out
# of the collector, and young collections wait for 10,000 new containers instead of 700. A
# read leaves no reference cycles behind (executor and loaders free by reference counting),
# so the rarer collections stay short (~0.3 ms).
GC_THRESHOLDS = (10_000, 10, 10)


@contextmanager
def _collector_tuned() -> Iterator[None]:
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def create_app(
    settings: Settings | None = None,
    *,
    robust_url: str | None = None,
    start_scheduler: bool | None = None,
) -> Starlette:
    """The ASGI app. ``robust_url`` defaults to ``settings.database_url``; the ETL scheduler
    runs in-process when ``start_scheduler`` (default ``settings.etl_scheduler_enabled``)
    and an operation database is configured."""
    settings = settings or get_settings()
    clock.set_now(settings.now)
    run_scheduler = settings.etl_scheduler_enabled if start_scheduler is None else start_scheduler

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = robust_url or settings.database_url
        if not url:
            raise RuntimeError("no robust database: set FATURE_DATABASE_URL or pass robust_url")
        # The reader's connections carry the read timeout (statement_timeout) on both paths.
        api = ApiState(settings=settings, robust_url=url, database=open_database(url, settings))
        engine = api.database.engine
        app.state.api = api
        await api.freshness.load()
        unsubscribe = events.subscribe(api.freshness.on_commit)
        api.freshness.start(settings.freshness_poll_seconds)
        api.nodes.start()  # the read replicas' checks (FATURE_DATABASE_READ_URLS)
        api.metrics.watch(api.freshness.as_of, engine.pool)
        live = app.state.live = LiveUpdates(api)  # subscriptions' commits and per-token slots
        live.start()
        # ETL commits of other processes through Redis (replicas never deliver NOTIFY).
        commit_bus = app.state.commit_bus = (
            CommitSubscriber(settings.redis_url, url, api.freshness.on_commit,
                             api.freshness.refresh)
            if settings.redis_url else None
        )
        if commit_bus is not None:
            commit_bus.start()
        scheduler = None
        if run_scheduler and settings.operation_database_url:
            scheduler = start_etl_scheduler(settings, url, settings.operation_database_url)
        app.state.scheduler = scheduler  # None in `fature serve` with the scheduler off
        try:
            with _collector_tuned():
                yield
        finally:
            if scheduler is not None:
                await scheduler.shutdown()
            unsubscribe()
            if commit_bus is not None:
                await commit_bus.stop()
            await live.stop()
            await api.freshness.stop()
            await api.nodes.close()
            await api.response_cache.close()
            await api.persisted.close()
            await api.database.close()
            await engine.dispose()

    graphql_app = FatureGraphQL(schema, graphql_ide="graphiql", allow_queries_via_get=True)
    routes = [
        Route("/graphql", graphql_app, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", FatureSubscriptions(schema, settings)),  # subscriptions
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        *graphiql.routes,
        *rest.routes,
        *export_routes,
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[*cors_middleware(settings), Middleware(ApiMiddleware)],
        exception_handlers=ROUTE_ERROR_HANDLERS,
    )
