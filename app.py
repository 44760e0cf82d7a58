"""The Starlette application: GraphQL at /graphql (with GraphiQL), the REST compatibility
endpoints under /api/v1, /healthz, /readyz and /metrics, all behind the door
(resolvers/door.py: tokens, rate limits, metrics, logs). The lifespan builds the engine, the
cache and the freshness watch and, when asked to, starts the ETL scheduler in-process."""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.ides import get_graphql_ide_html
from strawberry.types import ExecutionResult

from db.engine import make_engine
from db.settings import Settings, get_settings
from etl import events
from resolvers import export, health, rest
from resolvers.access import Database, sql
from resolvers.context import ApiState, Context, viewer_for
from resolvers.door import Door, rejection
from resolvers.jsonlog import operation_var
from resolvers.response_cache import execute_cached, operation_name
from schema.errors import PublicError, public_error
from schema.root import schema

log = logging.getLogger("fature.api")

DASHBOARD_QUERY = """\
# The affiliate dashboard: totals, the five network levels, the last 30 daily summaries
# and the newest referrals. Change the id in the Variables pane; press Ctrl-Enter to run.
query Dashboard($id: ID!) {
  syncStatus { dataAsOf }
  affiliate(id: $id) {
    id name status rankCpa
    totalReferrals totalValidatedReferrals totalNetworkSize
    totalDeposits totalBets totalGgr totalCpaEarned totalRevEarned
    network { totalNetworkSize levels { level count deposits bets ggr cpa rev } }
    summaries(period: DAILY, last: 30) {
      periodStart newReferrals totalDeposits totalBets totalGgr cpaEarned revEarned
    }
    referrals(first: 10) {
      totalCount
      edges { cursor node { referredUserId level referralDate status totalDeposits cpaAmount } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

_TOP_AFFILIATE = sql(
    "SELECT affiliate_id FROM affiliates WHERE status = 'active' "
    "ORDER BY total_cpa_earned DESC, affiliate_id LIMIT 1"
)


def graphiql_html(example_id: str) -> str:
    """Strawberry's GraphiQL page with the dashboard query and its variables preloaded."""
    html = get_graphql_ide_html("graphiql")
    start = html.find("const EXAMPLE_QUERY = `")
    end = html.find("`;", start)
    if start < 0 or end < 0:
        return html
    query = DASHBOARD_QUERY.replace("\\", "\\\\").replace("`", "\\`").replace("${", "\\${")
    variables = orjson.dumps({"id": example_id}).decode()
    html = html[:start] + f"const EXAMPLE_QUERY = `{query}`;" + html[end + 2:]
    return html.replace(
        "parameters.variables,\n", f"parameters.variables || {orjson.dumps(variables).decode()},\n", 1
    )


# Without an operationName the label comes from the document: each distinct one is parsed
# once (documents of ordinary size; a huge one is not worth keeping).
_cached_operation_name = lru_cache(maxsize=1024)(operation_name)
MAX_CACHED_DOCUMENT_CHARS = 20_000


def _operation_name(query: str | None, given: str | None) -> str | None:
    if given or not query or len(query) > MAX_CACHED_DOCUMENT_CHARS:
        return operation_name(query, given)
    return _cached_operation_name(query, None)


class Rejected(Exception):
    """A request refused before execution, answered as a GraphQL error with a code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class FatureGraphQL(GraphQL):
    """Strawberry's ASGI view with Fature's context, the response cache, batch caps, the
    data's as-of instant in ``extensions.asOf``, orjson, and the preloaded GraphiQL."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("state", {}).get("operation") == "graphiql":  # the door let it in without a token
            page = await self.render_graphql_ide(Request(scope, receive))
            await page(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        except Rejected as rejected:
            r = rejected
            raw, headers = rejection(scope, r.status, r.code, r.message, r.headers)
            await send({"type": "http.response.start", "status": rejected.status, "headers": headers})
            await send({"type": "http.response.body", "body": raw})

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        context = Context(api=request.app.state.api, viewer=viewer_for(request), request=request,
                          response=response)
        request.state.context = context
        return context

    def parse_json(self, data: str | bytes) -> Any:
        return orjson.loads(data)

    async def execute_operation(  # type: ignore[override]
        self, request: Request, request_adapter: Any, request_data: Any, context: Context,
        root_value: Any, sub_response: Any,
    ) -> Any:
        if isinstance(request_data, list):
            cap = context.settings.max_batch_operations
            if len(request_data) > cap:
                raise Rejected(400, "BATCH_TOO_LARGE",
                               f"A batch may hold at most {cap} operations, got {len(request_data)}")
            request.state.operation = "batch"
            extra = len(request_data) - 1  # the door counted the request once
            if extra > 0:
                verdict = await context.api.rate_limiter.hit(request.state.rate_key, False, cost=extra)
                if not verdict.allowed:
                    context.api.metrics.rate_limited.labels("token").inc()
                    wait = verdict.retry_after
                    raise Rejected(429, "RATE_LIMITED", f"Too many requests; retry in {wait} s",
                                   {"retry-after": str(wait)})
        else:
            request.state.operation = context.api.metrics.operation_label(
                _operation_name(request_data.query, request_data.operation_name)
            )
            operation_var.set(request.state.operation)
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    async def execute_single(  # type: ignore[override]
        self, request: Request, request_adapter: Any, sub_response: Any, context: Context,
        root_value: Any, request_data: Any,
    ) -> ExecutionResult:
        async def compute() -> ExecutionResult:
            return await super(FatureGraphQL, self).execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )

        result = await execute_cached(
            context, request_data.query, request_data.variables, request_data.operation_name, compute
        )
        request.state.cache = context.cache_status
        return result

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        # Parse errors are answered before the schema's extensions run: code them here too.
        if result.errors:
            result.errors = [public_error(e) for e in result.errors]
        response = await super().process_result(request, result)
        context: Context | None = getattr(request.state, "context", None)
        if context is not None:
            response["extensions"] = {**response.get("extensions", {}), "asOf": context.snapshot.as_of_text}
        return response

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        example_id = "1"
        try:
            rows = await request.app.state.api.database.fetch(_TOP_AFFILIATE)
            if rows:
                example_id = str(rows[0].affiliate_id)
        except PublicError:
            pass  # the page still loads; the query will report the outage itself
        return HTMLResponse(graphiql_html(example_id))


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


async def _start_scheduler(settings: Settings, robust_url: str) -> Any:
    try:
        from etl.scheduler import start_scheduler
    except ImportError as exc:
        log.warning("ETL scheduler not started: %s", exc)
        return None
    scheduler = start_scheduler(settings, robust_url, settings.operation_database_url)
    if inspect.isawaitable(scheduler):
        scheduler = await scheduler
    log.info("ETL scheduler started")
    return scheduler


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
    run_scheduler = settings.etl_scheduler_enabled if start_scheduler is None else start_scheduler

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = robust_url or settings.database_url
        if not url:
            raise RuntimeError("no robust database: set FATURE_DATABASE_URL or pass robust_url")
        engine = make_engine(url)
        api = ApiState(settings=settings, robust_url=url, database=Database(engine))
        app.state.api = api
        await api.freshness.load()
        unsubscribe = events.subscribe(api.freshness.on_commit)
        api.freshness.start(settings.freshness_poll_seconds)
        api.metrics.watch(api.freshness.as_of, engine.pool)
        scheduler = None
        if run_scheduler and settings.operation_database_url:
            scheduler = await _start_scheduler(settings, url)
        try:
            with _collector_tuned():
                yield
        finally:
            if scheduler is not None:
                await scheduler.shutdown()
            unsubscribe()
            await api.freshness.stop()
            await api.response_cache.close()
            await api.database.close()
            await engine.dispose()

    graphql_app = FatureGraphQL(schema, graphql_ide="graphiql", allow_queries_via_get=True)
    routes = [
        Route("/graphql", graphql_app, methods=["GET", "POST"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        *rest.routes,
        *export.routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(Door)])
