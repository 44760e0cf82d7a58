"""The Starlette application: GraphQL at /graphql (with GraphiQL), the REST compatibility
endpoints under /api/v1, and /healthz. The lifespan builds the engine and, when asked to,
starts the ETL scheduler in the same process."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.ides import get_graphql_ide_html
from strawberry.types import ExecutionResult

from db.engine import make_engine
from db.settings import Settings, get_settings
from resolvers import rest
from resolvers.access import Database
from resolvers.context import ApiState, Context, viewer_for
from resolvers.loaders.base import sql
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
    "SELECT affiliate_id FROM affiliates WHERE rank_cpa IS NOT NULL "
    "ORDER BY rank_cpa, affiliate_id LIMIT 1"
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


class FatureGraphQL(GraphQL):
    """Strawberry's ASGI view with Fature's context, orjson, and the preloaded GraphiQL."""

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        return Context(api=request.app.state.api, viewer=viewer_for(request), request=request,
                       response=response)

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        # Parse errors are answered before the schema's extensions run: code them here too.
        if result.errors:
            result.errors = [public_error(e) for e in result.errors]
        return await super().process_result(request, result)

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


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


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
        app.state.api = ApiState(settings=settings, robust_url=url, database=Database(engine))
        scheduler = None
        if run_scheduler and settings.operation_database_url:
            scheduler = await _start_scheduler(settings, url)
        try:
            yield
        finally:
            if scheduler is not None:
                await scheduler.shutdown()
            await engine.dispose()

    graphql_app = FatureGraphQL(schema, graphql_ide="graphiql", allow_queries_via_get=True)
    routes = [
        Route("/graphql", graphql_app, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        *rest.routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan)
