"""The strategy's REST endpoints, kept for existing clients.

Each endpoint runs a fixed GraphQL document through the same schema, resolvers and
DataLoaders as ``/graphql`` (no second data path); aliases give the REST field names,
which are the robust database's column names. Errors map to HTTP statuses: 400 bad input,
401 no valid token (the middleware), 403 not allowed (mutations are for admins), 404 unknown or
invisible affiliate (scoping: an affiliate sees itself and its downline), 409 ETL busy,
429 rate limited, 503 database unavailable. Answers carry ``X-Data-As-Of``; hot reads go
through the same response cache as GraphQL.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from strawberry.types import ExecutionResult

from schema.errors import error_code
from schema.root import schema
from web.errors import error_response
from web.state import ApiState, RequestContext, viewer_for

_AFFILIATE_FIELDS = """
  affiliate_id: affiliateId name email phone status
  total_referrals: totalReferrals total_validated_referrals: totalValidatedReferrals
  total_deposits: totalDeposits total_withdrawals: totalWithdrawals total_bets: totalBets
  total_ggr: totalGgr total_cpa_earned: totalCpaEarned total_rev_earned: totalRevEarned
  total_network_size: totalNetworkSize rank_cpa: rankCpa rank_referrals: rankReferrals
  registered_at: registeredAt
"""

AFFILIATE = f"query RestAffiliate($id: ID!) {{ affiliate(id: $id) {{ {_AFFILIATE_FIELDS} }} }}"

MLM_STRUCTURE = """
query RestMlmStructure($id: ID!) {
  affiliate(id: $id) {
    affiliate_id: affiliateId
    network { total_network_size: totalNetworkSize levels { level count deposits bets ggr cpa rev } }
  }
}"""

REFERRALS = """
query RestReferrals($id: ID!, $level: Int, $status: ReferralStatus, $first: Int, $after: String) {
  affiliate(id: $id) {
    affiliate_id: affiliateId
    referrals(level: $level, status: $status, first: $first, after: $after) {
      total_count: totalCount
      page_info: pageInfo { has_next_page: hasNextPage end_cursor: endCursor }
      nodes {
        referred_id: referredUserId mlm_level: level referral_date: referralDate status
        validation_date: validationDate total_deposits: totalDeposits total_bets: totalBets
        cpa_amount: cpaAmount
      }
    }
  }
}"""

FINANCIAL_SUMMARY = """
query RestFinancialSummary($id: ID!, $period: PeriodType!, $from: Date, $to: Date, $last: Int) {
  affiliate(id: $id) {
    affiliate_id: affiliateId
    total_deposits: totalDeposits total_withdrawals: totalWithdrawals total_bets: totalBets
    total_ggr: totalGgr total_cpa_earned: totalCpaEarned total_rev_earned: totalRevEarned
    summaries(period: $period, from: $from, to: $to, last: $last) {
      period_type: periodType period_start: periodStart new_referrals: newReferrals
      validated_referrals: validatedReferrals total_deposits: totalDeposits
      total_bets: totalBets total_ggr: totalGgr cpa_earned: cpaEarned rev_earned: revEarned
      levels { level new_referrals: newReferrals deposits bets ggr cpa rev }
    }
  }
}"""

VALIDATE_CPA = """
mutation RestValidateCpa($id: ID!) {
  validateCpa(affiliateId: $id) {
    affiliate_id: affiliateId
    validations {
      id: validationId affiliate_id: affiliateId referred_user_id: referredUserId cpa_level: cpaLevel
      cpa_amount: cpaAmount cpa_status: cpaStatus validation_date: validationDate
      user_deposits: userDeposits user_bets: userBets days_active: daysActive
    }
  }
}"""

def _json(body: Any, status: int = 200, request: Request | None = None) -> Response:
    response = Response(orjson.dumps(body), status_code=status, media_type="application/json")
    context = getattr(request.state, "context", None) if request is not None else None
    if context is not None and context.snapshot.as_of_text is not None:
        response.headers["x-data-as-of"] = context.snapshot.as_of_text
    return response


def _int_or_raw(value: str | None) -> Any:
    """Query-string numbers as ints; anything else goes through as-is so the schema rejects it
    with its own clear message."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


async def _run(request: Request, document: str, variables: dict[str, Any]) -> tuple[Any, Response | None]:
    api: ApiState = request.app.state.api
    context = RequestContext.build(api, viewer_for(request), request)
    request.state.context = context
    operation = document.split("(", 1)[0].split()[-1]  # RestAffiliate, RestValidateCpa, ...
    request.state.operation = operation

    async def compute() -> ExecutionResult:
        return await schema.execute(document, variable_values=variables, context_value=context,
                                    operation_name=operation)

    result = await context.execute_cached(document, variables, operation, compute)
    request.state.cache = context.cache_status
    if result.errors:
        error = result.errors[0]
        return None, error_response(error_code(error), error.message)
    return result.data, None


async def _affiliate(request: Request, document: str, **variables: Any) -> dict[str, Any] | Response:
    """The ``affiliate`` object the document returns, or the error response."""
    affiliate_id = request.path_params["affiliate_id"]
    data, failure = await _run(request, document, {"id": affiliate_id, **variables})
    if failure is not None:
        return failure
    if data["affiliate"] is None:
        return error_response("NOT_FOUND", f"no affiliate with id {affiliate_id}")
    return data["affiliate"]


async def get_affiliate(request: Request) -> Response:
    body = await _affiliate(request, AFFILIATE)
    return body if isinstance(body, Response) else _json(body, request=request)


async def get_mlm_structure(request: Request) -> Response:
    body = await _affiliate(request, MLM_STRUCTURE)
    if isinstance(body, Response):
        return body
    return _json({"affiliate_id": body["affiliate_id"], **body["network"]}, request=request)


async def get_referrals(request: Request) -> Response:
    q = request.query_params
    status = q.get("status")
    body = await _affiliate(
        request, REFERRALS,
        level=_int_or_raw(q.get("level")),
        status=status.upper() if status else None,
        first=_int_or_raw(q.get("first")) if "first" in q else 20,
        after=q.get("after"),
    )
    if isinstance(body, Response):
        return body
    referrals = body["referrals"]
    return _json({
        "affiliate_id": body["affiliate_id"],
        "total_count": referrals["total_count"],
        "page_info": referrals["page_info"],
        "referrals": referrals["nodes"],
    }, request=request)


async def get_financial_summary(request: Request) -> Response:
    q = request.query_params
    body = await _affiliate(
        request, FINANCIAL_SUMMARY,
        period=(q.get("period") or "monthly").upper(),
        last=_int_or_raw(q.get("last")),
        **{"from": q.get("from"), "to": q.get("to")},
    )
    return body if isinstance(body, Response) else _json(body, request=request)


async def post_validate_cpa(request: Request) -> Response:
    data, failure = await _run(request, VALIDATE_CPA, {"id": request.path_params["affiliate_id"]})
    return failure if failure is not None else _json(data["validateCpa"], request=request)


routes = [
    Route("/api/v1/affiliates/{affiliate_id}", get_affiliate, methods=["GET"]),
    Route("/api/v1/affiliates/{affiliate_id}/mlm-structure", get_mlm_structure, methods=["GET"]),
    Route("/api/v1/affiliates/{affiliate_id}/referrals", get_referrals, methods=["GET"]),
    Route("/api/v1/affiliates/{affiliate_id}/financial-summary", get_financial_summary,
          methods=["GET"]),
    Route("/api/v1/affiliates/{affiliate_id}/validate-cpa", post_validate_cpa, methods=["POST"]),
]
