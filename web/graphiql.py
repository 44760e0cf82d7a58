"""GraphiQL: the page analysts open at ``GET /graphql`` from a browser, with the dashboard
query preloaded (a placeholder id: the page reads no data and embeds no token)."""

from __future__ import annotations

from functools import lru_cache

import orjson
from starlette.routing import BaseRoute
from strawberry.http.ides import get_graphql_ide_html

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

# The example variables' id: a placeholder to replace (the page is served without a token,
# so it shows no data and costs no database read).
EXAMPLE_ID = "AFFILIATE_ID"


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


@lru_cache(maxsize=1)
def graphiql_page() -> str:
    """The page every GraphiQL load gets: the same bytes, built once."""
    return graphiql_html(EXAMPLE_ID)



# The routes of the page's own assets (none yet: the page loads them from a CDN).
routes: list[BaseRoute] = []
