"""The errors clients may see, and the policy that gives every error a code and hides the rest.

Clients branch on ``extensions.code``:
- ``BAD_USER_INPUT``: an argument is invalid (page size, level, range, cursor, id, a value
  of the wrong type); the message says which and why.
- ``GRAPHQL_PARSE_FAILED`` / ``GRAPHQL_VALIDATION_FAILED``: the document itself is wrong.
- ``SERVICE_UNAVAILABLE``: the database cannot be reached; retry later.
- ``TIMEOUT``: a query ran longer than its statement timeout (HTTP 503 in REST); ask for
  less or retry later.
- ``BUSY``: the ETL holds the ledger lock; retry in a moment.
- ``NOT_AVAILABLE``: the feature is not part of this build.
- ``ARCHIVED`` (HTTP 410): the date range reaches months whose transactions were archived;
  ``extensions.months`` names them, the message says how to bring one back.
- ``UNAUTHENTICATED`` (HTTP 401): no valid bearer token; ``extensions.reason`` says why.
- ``FORBIDDEN``: the token's role may not do this (mutations are for admins).
- ``RATE_LIMITED`` (HTTP 429): too many requests; retry after ``Retry-After`` seconds.
- ``ACCOUNT_SUSPENDED`` (HTTP 403): the token's affiliate is suspended.
- ``QUERY_TOO_DEEP``, ``TOO_MANY_ALIASES``, ``TOO_MANY_TOKENS``, ``QUERY_TOO_COSTLY``,
  ``BATCH_TOO_LARGE``, ``INTROSPECTION_DISABLED``, ``DOCUMENT_TOO_LARGE``: the document
  exceeds a limit; ``PAYLOAD_TOO_LARGE`` (HTTP 413): the request body does.
- ``BAD_REQUEST`` (HTTP 400): the request itself is not well formed (not JSON, not an object
  or a batch of objects, a member of the wrong type).
- ``INTERNAL_SERVER_ERROR``: anything unexpected; the message is masked and the details are
  logged server-side only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from commissions.errors import CommissionError
from db.engine import DatabaseUnavailable, QueryTimeout
from db.reader import UNAVAILABLE_MESSAGE
from resolvers.errors import PublicError

log = logging.getLogger("fature.api")

MASKED_MESSAGE = "Unexpected error."

# Messages of strawberry's limiters and graphql-core's rules, and the codes they get.
_LIMIT_MARKERS = (
    ("exceeds maximum operation depth", "QUERY_TOO_DEEP"),
    ("aliases found. Allowed:", "TOO_MANY_ALIASES"),
    ("Document contains more than", "TOO_MANY_TOKENS"),
    ("introspection has been disabled", "INTROSPECTION_DISABLED"),
)
# "Did you mean ...?" would let a client discover the schema field by field.
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def without_suggestions(message: str) -> str:
    return _SUGGESTION.sub("", message) if "Did you mean" in message else message


# graphql-core messages of argument/variable values that cannot be coerced (client input).
_INPUT_MARKERS = (
    "got invalid value",
    "has invalid value",
    "does not exist in",
    "cannot represent",
    "Expected value of type",
    "of required type",
    "was not provided",
)


def is_unexpected(error: GraphQLError) -> bool:
    """An exception from our code (a bug), not a client mistake or a known condition.
    graphql-core raises GraphQLErrors itself when it coerces argument and variable values."""
    original = error.original_error
    return original is not None and not isinstance(
        original, PublicError | GraphQLError | DatabaseUnavailable | CommissionError
    )


def error_code(error: GraphQLError) -> str:
    """The code a (possibly unclassified) GraphQL error is reported with."""
    original = error.original_error
    if isinstance(original, PublicError | CommissionError):
        return original.code
    if isinstance(original, QueryTimeout):
        return QueryTimeout.code
    if isinstance(original, DatabaseUnavailable):
        return "SERVICE_UNAVAILABLE"
    if is_unexpected(error):
        return "INTERNAL_SERVER_ERROR"
    if error.extensions and "code" in error.extensions:
        return str(error.extensions["code"])
    for marker, code in _LIMIT_MARKERS:
        if marker in error.message:
            return code
    if error.message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if any(marker in error.message for marker in _INPUT_MARKERS):
        return "BAD_USER_INPUT"
    return "GRAPHQL_VALIDATION_FAILED"


def public_error(error: GraphQLError) -> GraphQLError:
    """The error as a client may see it: coded, and masked when unexpected."""
    code = error_code(error)
    if (error.extensions or {}).get("code") == code and "Did you mean" not in error.message:
        return error  # already public
    unexpected = is_unexpected(error)
    message = MASKED_MESSAGE if unexpected else without_suggestions(error.message)
    if isinstance(error.original_error, PublicError | CommissionError):
        message = error.original_error.message
    elif isinstance(error.original_error, QueryTimeout):
        message = str(QueryTimeout())
    elif isinstance(error.original_error, DatabaseUnavailable):
        message = UNAVAILABLE_MESSAGE  # never the driver's words (hosts, users)
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None if unexpected else error.original_error,
        extensions={**(error.extensions or {}), "code": code},
    )


class ErrorPolicy(SchemaExtension):
    """Masks unexpected errors and codes all others (the job of strawberry's MaskErrors, plus
    codes). Logging happens earlier, in ``FatureSchema.process_errors``, on the raw errors."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [public_error(e) for e in errors]  # type: ignore[union-attr]


def log_unexpected(errors: list[GraphQLError]) -> None:
    """Log what clients will not see: unexpected exceptions with their stack."""
    for error in errors:
        if not is_unexpected(error):
            continue
        original = error.original_error
        assert original is not None
        log.error(
            "unexpected error at %s: %s",
            ".".join(str(p) for p in error.path or ()), original,
            exc_info=(type(original), original, original.__traceback__),
        )
