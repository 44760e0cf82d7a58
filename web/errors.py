"""Errors outside GraphQL execution: one map from the API's error codes to HTTP statuses, one
shape of the REST JSON body, ``{"error": {"code", "message"}}``, and ``Rejected``, a GraphQL
request refused before execution (answered in the GraphQL errors shape by the view)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from commissions.errors import CommissionError
from db.engine import DatabaseUnavailable, QueryTimeout
from db.reader import UNAVAILABLE_MESSAGE
from resolvers.errors import PublicError

HTTP_STATUS = {
    "BAD_USER_INPUT": 400,
    "BAD_REQUEST": 400,
    "DOCUMENT_TOO_LARGE": 400,
    "GRAPHQL_PARSE_FAILED": 400,
    "GRAPHQL_VALIDATION_FAILED": 400,
    "QUERY_TOO_DEEP": 400,
    "TOO_MANY_ALIASES": 400,
    "TOO_MANY_TOKENS": 400,
    "QUERY_TOO_COSTLY": 400,
    "BATCH_TOO_LARGE": 400,
    "PERSISTED_QUERY_HASH_MISMATCH": 400,
    "PERSISTED_QUERY_NOT_SUPPORTED": 400,
    "TRUSTED_DOCUMENT_REQUIRED": 403,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "ACCOUNT_SUSPENDED": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "NOT_ACCEPTABLE": 406,
    "BUSY": 409,
    "ARCHIVED": 410,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "RATE_LIMITED": 429,
    "NOT_AVAILABLE": 501,
    "SERVICE_UNAVAILABLE": 503,
    "TIMEOUT": 503,
}
# The codes of the statuses strawberry's view refuses a request with (the reverse of the map
# above, where several codes share a status).
CODE_OF_STATUS = {
    400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE",
}


class Rejected(Exception):
    """A GraphQL request refused before execution, answered as a GraphQL error with a code
    (``status`` may be 200: Apollo's PERSISTED_QUERY_NOT_FOUND is an answer, not a failure)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(code: str, message: str) -> Response:
    """The JSON error body with the status of ``code`` (500 for an unknown code)."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(body, status_code=HTTP_STATUS.get(code, 500), media_type="application/json")


def exception_response(exc: PublicError | CommissionError | DatabaseUnavailable) -> Response:
    """A client-facing exception as its JSON error (a database outage never shows its text)."""
    if isinstance(exc, QueryTimeout):
        return error_response(QueryTimeout.code, str(QueryTimeout()))
    if isinstance(exc, DatabaseUnavailable):
        return error_response("SERVICE_UNAVAILABLE", UNAVAILABLE_MESSAGE)
    return error_response(exc.code, exc.message)


async def _no_route(request: Request, exc: Exception) -> Response:
    """An unknown path (404) or a method the route does not take (405), in the JSON shape."""
    status = getattr(exc, "status_code", 404)
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        response = error_response("METHOD_NOT_ALLOWED", message)
        allow = (getattr(exc, "headers", None) or {}).get("Allow")
        if allow:
            response.headers["Allow"] = allow
        return response
    return error_response("NOT_FOUND", f"No such endpoint: {request.url.path}")


# Starlette's exception handlers for the router's own refusals (plain text by default).
ROUTE_ERROR_HANDLERS: dict[Any, Any] = {404: _no_route, 405: _no_route}
