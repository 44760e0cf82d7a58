"""Structured JSON logs: one object a line, with the request id and operation of the request
being served, and nothing secret: bearer tokens and URL passwords are redacted from every
message and field, and the API never logs variables, names, e-mails or phones.

Database errors carry the values they were given (asyncpg: ``invalid input for query argument
$1: 'x'``, ``DETAIL: Key (email)=(x) already exists``; SQLAlchemy: ``[parameters: ...]``).
``scrub_database_errors()`` (called by the app's state) puts a filter on the service's
loggers that rewrites such an error, in a record's arguments and its ``exc_info`` (the whole
chain of causes), into a ``RedactedError`` of the same traceback whose text keeps the error's
kind, SQLSTATE wording and SQL but no quoted literal, argument value or DETAIL line.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import exc as sa_exc

request_id_var: ContextVar[str | None] = ContextVar("fature_request_id", default=None)
operation_var: ContextVar[str | None] = ContextVar("fature_operation", default=None)

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_SECRET_KEY = re.compile(r"(?i)(password|secret|token|authorization)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+")
# LogRecord attributes that are not extra fields.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """The text without tokens and passwords."""
    text = _JWT.sub("[redacted-token]", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _SECRET_KEY.sub(r"\1\2[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
            entry["operation"] = operation_var.get()
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: int | str = logging.INFO, stream: Any = None) -> logging.Handler:
    """JSON lines on stderr for the ``fature`` loggers (call once, e.g. in ``fature serve``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("fature")
    for old in [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    scrub_database_errors()
    return handler


# What carries bound values in its text: the drivers' errors and SQLAlchemy's statement errors.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError, asyncpg.InterfaceError, sa_exc.StatementError,
)
# The loggers the API and its jobs log exceptions on (a logger's filter sees its own records).
SCRUBBED_LOGGERS = ("fature", "fature.api", "fature.access", "fature.jobs", "fature.etl", "uvicorn.error")
# A quoted literal, unless it names a database object ('column "x" does not exist').
_QUOTED = re.compile(
    r"(?<!relation )(?<!column )(?<!table )(?<!constraint )(?<!index )(?<!schema )"
    r"(?<!function )(?<!database )(?<!sequence )(?<!view )(?<!role )(?<!<class )"
    r"""('(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")"""
)
_ARGUMENT = re.compile(r"(query argument \$\d+: ).*?((?: \([^()\n]*\))?)$", re.M)
_DETAIL = re.compile(r"^(DETAIL|HINT):.*$", re.M)
_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\n|$)", re.S)


def scrub(text: str) -> str:
    """A database error's text without the values it quotes."""
    text = _PARAMETERS.sub("[parameters: redacted]", text)
    text = _DETAIL.sub(r"\1: [redacted]", text)
    text = _ARGUMENT.sub(r"\1[redacted]\2", text)
    return _QUOTED.sub("[redacted]", text)


class RedactedError(Exception):
    """Stands in a log record for an exception whose text held bound values."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is s for s in seen) and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return seen


def _holds_values(exc: BaseException) -> bool:
    return any(isinstance(e, DATABASE_ERRORS) for e in _chain(exc))


def _describe(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}: {scrub(str(exc))}"


def redacted(exc: BaseException) -> RedactedError:
    """A copy of ``exc``'s chain (texts scrubbed, tracebacks kept) of ``RedactedError``s."""
    copies = [RedactedError(_describe(e)).with_traceback(e.__traceback__) for e in _chain(exc)]
    for original, copy, following in zip(_chain(exc), copies, [*copies[1:], None], strict=True):
        if original.__cause__ is not None:
            copy.__cause__ = following
        else:
            copy.__context__ = following
            copy.__suppress_context__ = original.__suppress_context__
    return copies[0]


class DatabaseValueFilter(logging.Filter):
    """Rewrites a record's database errors (arguments, ``exc_info``) without bound values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, BaseException) and _holds_values(record.msg):
            record.msg = _describe(record.msg)
        if record.args:
            if isinstance(record.args, tuple):
                record.args = tuple(
                    _describe(a) if isinstance(a, BaseException) and _holds_values(a) else a
                    for a in record.args
                )
            elif isinstance(record.args, dict):
                record.args = {
                    k: _describe(a) if isinstance(a, BaseException) and _holds_values(a) else a
                    for k, a in record.args.items()
                }
        if record.exc_info and record.exc_info[1] is not None and _holds_values(record.exc_info[1]):
            copy = redacted(record.exc_info[1])
            record.exc_info = (RedactedError, copy, copy.__traceback__)
            record.exc_text = None
        return True


_FILTER = DatabaseValueFilter()


def scrub_database_errors() -> None:
    """Put the filter on the service's loggers (idempotent)."""
    for name in SCRUBBED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
