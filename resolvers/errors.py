"""The errors clients may see: each carries the code clients branch on (``extensions.code``
in GraphQL, the HTTP status in REST; the edge maps them). Raised by resolvers and the edge;
the list of all codes and what they mean is in ``schema/errors.py``."""

from __future__ import annotations

from db.reader import UNAVAILABLE_MESSAGE


class PublicError(Exception):
    """An error whose message is written for clients; ``code`` goes to ``extensions.code``."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = {"code": self.code}


class BadUserInput(PublicError):
    code = "BAD_USER_INPUT"


class ServiceUnavailable(PublicError):
    code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str = UNAVAILABLE_MESSAGE) -> None:
        super().__init__(message)


class Busy(PublicError):
    code = "BUSY"


class NotAvailable(PublicError):
    code = "NOT_AVAILABLE"


class Forbidden(PublicError):
    code = "FORBIDDEN"


class QueryTooCostly(PublicError):
    code = "QUERY_TOO_COSTLY"


class NotFound(PublicError):
    code = "NOT_FOUND"


class Archived(PublicError):
    """The request's date range reaches months whose transactions were archived (etl/archive.py);
    ``extensions.months`` names them (YYYY-MM)."""

    code = "ARCHIVED"

    def __init__(self, months: list[str]) -> None:
        super().__init__(
            f"the transactions of {', '.join(months)} are archived (older than the months kept "
            "online); ask an operator to bring a month back with `fature archive restore YYYY-MM`, "
            "or start the range after them")
        self.extensions["months"] = months  # type: ignore[assignment]
