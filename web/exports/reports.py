"""CSV and XLSX exports of the Data service's reports: ``GET /api/v1/exports/{report}``.

Reports: ``statements`` (``month=YYYY-MM``, optional ``affiliate_id``, ``status``),
``ranking`` (``metric=cpa_earned|validated_referrals``), ``referrals`` (``affiliate_id``,
optional ``level``, ``status``), ``summaries`` (``affiliate_id``, ``period`` default
monthly, optional ``from``/``to`` bounding the period start, inclusive) and ``validations``
(optional ``affiliate_id``, ``level``, ``status``, ``from``/``to``: a date is a local day,
both ends inclusive; an instant bounds ``[from, to)``, read in the business time zone when
it has no offset).

Scoped exactly like GraphQL, through the same ``Viewer``/``DataAccess`` rules: an affiliate
token exports itself and its downline (anyone else's referrals, summaries or validations is
404, like REST), its own statements only (money is personal: ``may_read_money_of``), the
ranking among what it sees; personal data is masked by ``Viewer.personal_data``.

Options: ``sep`` (``,`` default, ``;`` or ``tab``) and ``decimal`` (``point`` default or
``comma``: 1234,56, which needs ``sep=;`` or tab). Money is written from the database's exact
decimals, never floats; enums in GraphQL's upper-case spelling as in REST; instants ISO 8601
with offset. Free-text cells that a spreadsheet would run as a formula get a leading ``'``.

Constant memory: rows come from a server-side cursor in chunks of ``CHUNK`` and each chunk
is written and sent before the next is read. The first chunk is read before the answer
starts, so bad input and an unreachable database still get a JSON error with its status.

``format=xlsx`` (``csv`` the default): the same rows and cells in a workbook written to a
temporary file and streamed back once complete (``web.exports.xlsx``), so any error is still
a JSON error. ``sep``/``decimal`` are CSV options and refused with ``format=xlsx``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Numeric,
    Text,
    and_,
    cast,
    column,
    select,
    table,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from db.engine import DatabaseUnavailable
from db.reader import UNAVAILABLE_ERRORS
from db.tables import AFFILIATE_COLUMNS, affiliates
from etl import statements as st
from resolvers.arguments import LEVELS, MAX_ID, aware, check_range
from resolvers.errors import BadUserInput, NotFound, PublicError, ServiceUnavailable
from resolvers.statement import from_open, from_stored, may_read_money_of
from schema.enums import CpaStatus, PeriodType, RankingMetric, ReferralStatus
from schema.summary import PeriodicSummary
from web.errors import error_response, exception_response
from web.exports.xlsx import XLSX_MEDIA_TYPE, file_chunks, write_workbook
from web.state import ApiState, RequestContext, viewer_for

log = logging.getLogger("fature.api")

CHUNK = 5000  # rows per server-side fetch and per body chunk
REPORTS = ("statements", "ranking", "referrals", "summaries", "validations")
_TEXT_CELLS = ("=", "+", "-", "@", "\t", "\r")
_PHONE_LIKE = re.compile(r"[+-][0-9 ().-]*")


# ------------------------------------------------------------------ cells
@dataclass(frozen=True)
class CsvFormat:
    sep: str = ","
    decimal_comma: bool = False

    def money(self, value: Decimal) -> str:
        text = format(value, "f")
        return text.replace(".", ",") if self.decimal_comma else text

    def cell(self, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, Decimal):
            return self.money(value)
        if isinstance(value, float):  # never expected: money is Decimal end to end
            raise TypeError("floats are not exported")
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, Enum):
            return value.name
        return str(value)


def text_cell(value: str | None) -> str | None:
    """Free text as data, never a spreadsheet formula."""
    if value and value.startswith(_TEXT_CELLS) and not _PHONE_LIKE.fullmatch(value):
        return "'" + value
    return value


def parse_format(q: Any) -> CsvFormat:
    raw_sep = q.get("sep", ",")
    seps = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "comma": ",", "semicolon": ";"}
    if raw_sep not in seps:
        raise BadUserInput(f"sep must be ',', ';' or 'tab', got {raw_sep[:10]!r}")
    sep = seps[raw_sep]
    raw_decimal = q.get("decimal", "point").lower()
    if raw_decimal not in ("point", "dot", ".", "comma", ","):
        raise BadUserInput(f"decimal must be 'point' or 'comma', got {raw_decimal[:10]!r}")
    comma = raw_decimal in ("comma", ",")
    if comma and sep == ",":
        raise BadUserInput("decimal=comma needs sep=; (or tab): a decimal comma in a comma-separated "
                           "file would split every amount in two")
    return CsvFormat(sep, comma)


FORMATS = ("csv", "xlsx")


def parse_output(q: Any) -> str:
    """``format``: csv (the default) or xlsx; the CSV options make no sense in a workbook."""
    output = (q.get("format") or "csv").strip().lower()
    if output not in FORMATS:
        raise BadUserInput(f"format must be csv or xlsx, got {q.get('format', '')[:10]!r}")
    if output == "xlsx":
        for option in ("sep", "decimal"):
            if option in q:
                raise BadUserInput(f"{option} applies to format=csv only (a workbook has cells, "
                                   "its numbers are shown in the reader's locale)")
    return output


# ------------------------------------------------------------------ parameters
def _id(value: str | None, name: str, required: bool = False) -> int | None:
    if value is None or value == "":
        if required:
            raise BadUserInput(f"{name} is required")
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise BadUserInput(f"{name} must be a positive integer id, got {value[:40]!r}")
    return int(text)


def _level(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or int(value) not in LEVELS:
        raise BadUserInput(f"level must be between 1 and 5, got {value[:10]!r}")
    return int(value)


def _enum(value: str | None, name: str, kind: type[Enum], aliases: dict[str, str] | None = None) -> Any:
    if value is None or value == "":
        return None
    text = value.strip().lower()
    text = (aliases or {}).get(text, text)
    for member in kind:
        if text in (member.value, member.name.lower()):
            return member
    allowed = "|".join(aliases or (m.name.lower() for m in kind))
    raise BadUserInput(f"{name} must be one of {allowed}, got {value[:20]!r}")


def _date(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError as exc:
        raise BadUserInput(f"{name} must be a date YYYY-MM-DD, got {value[:40]!r}") from exc


def _month(value: str | None) -> date:
    if not value:
        raise BadUserInput("month is required (YYYY-MM)")
    match = re.fullmatch(r"(\d{4})-(\d{2})(?:-01)?", value.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise BadUserInput(f"month must look like YYYY-MM, got {value[:20]!r}")
    return date(int(match.group(1)), int(match.group(2)), 1)


def _bound(value: str | None, name: str, ctx: RequestContext, end: bool) -> datetime | None:
    """A date (a local day: from its start, or to the start of the next) or an instant."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta())
            return datetime.combine(day, time(), ctx.api.zone)
        return aware(datetime.fromisoformat(text), ctx.api.zone)
    except ValueError as exc:
        raise BadUserInput(f"{name} must be a date YYYY-MM-DD or an ISO 8601 instant, "
                           f"got {value[:40]!r}") from exc


def _check_known(q: Any, allowed: Iterable[str]) -> None:
    unknown = sorted(set(q.keys()) - {*allowed, "sep", "decimal", "format"})
    if unknown:
        raise BadUserInput(f"unknown parameter {unknown[0][:40]!r} for this report")


# ------------------------------------------------------------------ reports
Rows = Callable[[AsyncConnection], AsyncIterator[Sequence[Sequence[Any]]]]


@dataclass
class Export:
    filename: str
    header: list[str]
    rows: Rows  # chunks of rows (cell values) read on the given connection


async def _visible_affiliate(ctx: RequestContext, affiliate_id: int) -> None:
    """404 unless the viewer may read this affiliate (the GraphQL ``affiliate`` is null)."""
    if await ctx.loaders.affiliate_by_id.load(affiliate_id) is None:
        raise NotFound(f"no affiliate with id {affiliate_id}")


async def _chunks(conn: AsyncConnection, statement: Any, params: dict[str, Any],
                  convert: Callable[[Any], Sequence[Any]]) -> AsyncIterator[Sequence[Sequence[Any]]]:
    result = await conn.stream(statement.execution_options(yield_per=CHUNK), params)
    async for part in result.partitions(CHUNK):
        yield [convert(r) for r in part]


def _streamed(
    statement: Any, convert: Callable[[Any], Sequence[Any]]
) -> Callable[[AsyncConnection], AsyncIterator[Sequence[Sequence[Any]]]]:
    """An export's row source: ``statement`` in chunks, each row through ``convert``."""

    async def rows(conn: AsyncConnection) -> AsyncIterator[Sequence[Sequence[Any]]]:
        async for chunk in _chunks(conn, statement, {}, convert):
            yield chunk

    return rows


_STATEMENT_COLUMNS = [
    "affiliate_id", "month", "status", "plan_id", "plan_version_id", "negative_carryover",
    "min_payout", "cpa_validated", "cpa_rejected", "cpa", "rev", "cpa_adjustments",
    "rev_adjustments", "carryover_in", "rev_payable", "carryover_out", "held_in", "payable",
    "held_out", "closed_at", "approved_at", "paid_at", "payment_reference",
]


async def statements_export(ctx: RequestContext, q: Any) -> Export:
    _check_known(q, ("month", "affiliate_id", "status"))
    month = _month(q.get("month"))
    owner = _id(q.get("affiliate_id"), "affiliate_id")
    from schema.statement import StatementStatus

    status = _enum(q.get("status"), "status", StatementStatus)
    viewer = ctx.viewer
    if owner is not None:
        if not may_read_money_of(viewer, owner):
            raise NotFound(f"no affiliate with id {owner}")
        await _visible_affiliate(ctx, owner)
    elif not viewer.sees_everyone:
        owner = viewer.affiliate_id
    tz = ctx.settings.timezone

    def cells(s: Any) -> list[Any]:
        values = [getattr(s, name) for name in _STATEMENT_COLUMNS]
        values[0] = s.owner
        values[-1] = text_cell(s.payment_reference)
        return values

    async def rows(conn: AsyncConnection) -> AsyncIterator[Sequence[Sequence[Any]]]:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        closed = await st.last_closed_month(raw)
        if closed is not None and month <= closed:
            cursor = raw.cursor(
                "SELECT * FROM commission_statements WHERE month = $1 "
                "AND ($2::bigint IS NULL OR affiliate_id = $2) AND ($3::text IS NULL OR status = $3) "
                "ORDER BY affiliate_id", month, owner, status.value if status else None, prefetch=CHUNK)
            convert: Callable[[Any], Any] = from_stored
        elif status in (None, StatementStatus.OPEN) and month <= st.month_start(st.local_today(tz)):
            cursor = st.stream_open_statements(raw, tz, month, [owner] if owner is not None else None)
            convert = from_open
        else:
            return
        chunk: list[list[Any]] = []
        async for item in cursor:
            chunk.append(cells(convert(item)))
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    suffix = f"{month:%Y-%m}" + (f"-{owner}" if owner is not None else "")
    return Export(f"statements-{suffix}.csv", list(_STATEMENT_COLUMNS), rows)


_AFFILIATE_COLUMNS = [c.strip() for c in AFFILIATE_COLUMNS.split(",")]


async def ranking_export(ctx: RequestContext, q: Any) -> Export:
    _check_known(q, ("metric",))
    metric = _enum(q.get("metric") or "cpa_earned", "metric", RankingMetric,
                   {"cpa_earned": "rank_cpa", "validated_referrals": "rank_referrals"})
    rank = affiliates.c[metric.value]
    ident = affiliates.c.affiliate_id
    statement = (select(*affiliates.c).where(*ctx.access.scoped(ident), rank.is_not(None))
                 .order_by(rank, ident))
    viewer = ctx.viewer

    def convert(r: Any) -> list[Any]:
        values = list(r)
        name, email, phone = viewer.personal_data(r.affiliate_id, r.name, r.email, r.phone)
        values[1:4] = [text_cell(name), text_cell(email), text_cell(phone)]
        values[4] = r.status.upper()
        return values

    rows = _streamed(statement, convert)

    label = "cpa_earned" if metric is RankingMetric.CPA_EARNED else "validated_referrals"
    return Export(f"ranking-{label}.csv", list(_AFFILIATE_COLUMNS), rows)


_REFERRAL_COLUMNS = [
    "referrer_id", "referred_id", "mlm_level", "referral_date", "status", "validation_date",
    "total_deposits", "total_bets", "cpa_amount",
]
_referrals = table("affiliate_referrals", *(column(c) for c in _REFERRAL_COLUMNS))


async def referrals_export(ctx: RequestContext, q: Any) -> Export:
    _check_known(q, ("affiliate_id", "level", "status"))
    owner = _id(q.get("affiliate_id"), "affiliate_id", required=True)
    level = _level(q.get("level"))
    status = _enum(q.get("status"), "status", ReferralStatus)
    assert owner is not None
    await _visible_affiliate(ctx, owner)
    t = _referrals.c
    conditions = [t.referrer_id == owner]
    if level is not None:
        conditions.append(t.mlm_level == level)
    if status is not None:
        conditions.append(t.status == status.value)
    # The GraphQL order (newest first), along the index (referrer_id, referral_date DESC, referred_id).
    statement = select(*_referrals.c).where(and_(*conditions)).order_by(
        t.referral_date.desc(), t.referred_id)

    def convert(r: Any) -> list[Any]:
        values = list(r)
        values[4] = r.status.upper()
        return values

    rows = _streamed(statement, convert)

    return Export(f"referrals-{owner}.csv", list(_REFERRAL_COLUMNS), rows)


_SUMMARY_COLUMNS = [
    "affiliate_id", "period_type", "period_start", "new_referrals", "validated_referrals",
    "total_deposits", "total_bets", "total_ggr", "cpa_earned", "rev_earned",
]
_LEVEL_FIELDS = ("new_referrals", "deposits", "bets", "ggr", "cpa", "rev")
_summaries = table("affiliate_periodic_summaries", *(column(c) for c in _SUMMARY_COLUMNS),
                   column("level_breakdown"))


async def summaries_export(ctx: RequestContext, q: Any) -> Export:
    _check_known(q, ("affiliate_id", "period", "from", "to"))
    owner = _id(q.get("affiliate_id"), "affiliate_id", required=True)
    period = _enum(q.get("period") or "monthly", "period", PeriodType)
    start, end = _date(q.get("from"), "from"), _date(q.get("to"), "to")
    check_range(start, end)
    assert owner is not None
    await _visible_affiliate(ctx, owner)
    t = _summaries.c
    conditions = [t.affiliate_id == owner, t.period_type == period.value]
    if start is not None:
        conditions.append(t.period_start >= start)
    if end is not None:
        conditions.append(t.period_start <= end)
    statement = select(*(t[c] for c in _SUMMARY_COLUMNS),
                       cast(t.level_breakdown, Text).label("level_breakdown")).where(
        and_(*conditions)).order_by(t.period_start)

    def convert(r: Any) -> list[Any]:
        summary = PeriodicSummary.from_row(r)
        values = [r.affiliate_id, summary.period_type, *(getattr(summary, c) for c in _SUMMARY_COLUMNS[2:])]
        for level in summary.levels():
            values.extend(getattr(level, f) for f in _LEVEL_FIELDS)
        return values

    rows = _streamed(statement, convert)

    header = [*_SUMMARY_COLUMNS, *(f"level_{n}_{f}" for n in LEVELS for f in _LEVEL_FIELDS)]
    return Export(f"summaries-{owner}-{period.value}.csv", header, rows)


_VALIDATION_COLUMNS = [
    "id", "affiliate_id", "referred_user_id", "validation_date", "cpa_level", "cpa_amount",
    "cpa_status", "user_deposits", "user_bets", "days_active", "created_at",
]
_validations = table(
    "affiliate_cpa_validations",
    column("id", BigInteger), column("affiliate_id", BigInteger), column("referred_user_id", BigInteger),
    column("validation_date"), column("cpa_level", Integer), column("cpa_amount", Numeric(14, 2)),
    column("cpa_status", Text), column("user_deposits", Numeric(18, 2)), column("user_bets", Numeric(18, 2)),
    column("days_active", Integer), column("created_at"),
)


async def validations_export(ctx: RequestContext, q: Any) -> Export:
    _check_known(q, ("affiliate_id", "level", "status", "from", "to"))
    owner = _id(q.get("affiliate_id"), "affiliate_id")
    level = _level(q.get("level"))
    status = _enum(q.get("status"), "status", CpaStatus)
    start, end = _bound(q.get("from"), "from", ctx, False), _bound(q.get("to"), "to", ctx, True)
    if start is not None and end is not None and start >= end:
        raise BadUserInput(f"from ({q.get('from')}) must be before to ({q.get('to')})")
    t = _validations.c
    conditions: list[Any] = []
    if owner is not None:
        await _visible_affiliate(ctx, owner)
        conditions.append(t.affiliate_id == owner)
    else:
        conditions.extend(ctx.access.scoped(t.affiliate_id))
    if level is not None:
        conditions.append(t.cpa_level == level)
    if status is not None:
        conditions.append(t.cpa_status == status.value)
    if start is not None:
        conditions.append(t.validation_date >= start)
    if end is not None:
        conditions.append(t.validation_date < end)
    # The GraphQL order (newest first), along the index (affiliate_id, validation_date, id).
    statement = select(*_validations.c).where(*conditions).order_by(
        t.validation_date.desc(), t.id.desc())

    def convert(r: Any) -> list[Any]:
        values = list(r)
        values[6] = r.cpa_status.upper()
        return values

    rows = _streamed(statement, convert)

    return Export(f"validations{f'-{owner}' if owner else ''}.csv", list(_VALIDATION_COLUMNS), rows)


_BUILDERS = {
    "statements": statements_export, "ranking": ranking_export, "referrals": referrals_export,
    "summaries": summaries_export, "validations": validations_export,
}


# ------------------------------------------------------------------ streaming
@asynccontextmanager
async def _snapshot(api: ApiState) -> AsyncIterator[AsyncConnection]:
    """One pooled connection in a read-only repeatable-read transaction: a consistent report,
    and the transaction server-side cursors need."""
    async with api.database.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with conn.begin():
            await conn.exec_driver_sql("SELECT 1")  # the driver opens its transaction lazily
            yield conn


async def _row_chunks(export: Export, api: ApiState) -> AsyncGenerator[Sequence[Sequence[Any]], None]:
    """The report's rows in chunks, read in one snapshot; a lost database is a 503."""
    try:
        async with _snapshot(api) as conn:
            async for chunk in export.rows(conn):
                yield chunk
    except UNAVAILABLE_ERRORS as exc:
        raise ServiceUnavailable() from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc.orig, UNAVAILABLE_ERRORS):
            raise ServiceUnavailable() from exc
        raise


async def _encode(export: Export, fmt: CsvFormat, api: ApiState) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=fmt.sep, lineterminator="\r\n")
    writer.writerow(export.header)
    cell = fmt.cell
    async with aclosing(_row_chunks(export, api)) as chunks:
        async for chunk in chunks:
            writer.writerows([cell(v) for v in row] for row in chunk)
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()  # the header of an empty report


async def _rest(first: bytes, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for part in body:
            yield part
    except Exception:
        log.exception("export failed mid-stream; the CSV was cut short")
        raise
    finally:
        await body.aclose()  # type: ignore[attr-defined]


async def export_csv(request: Request) -> Response:
    api: ApiState = request.app.state.api
    report = request.path_params["report"]
    if report not in _BUILDERS:
        return error_response("NOT_FOUND", f"no export named {report[:40]!r}; reports: {', '.join(REPORTS)}")
    context = RequestContext.build(api, viewer_for(request), request)
    request.state.context = context
    body: AsyncIterator[bytes] | None = None
    try:
        output = parse_output(request.query_params)
        fmt = parse_format(request.query_params)
        export = await _BUILDERS[report](context, request.query_params)
        if output == "xlsx":
            workbook = await write_workbook(_row_chunks(export, api), report, export.header)
        else:
            body = _encode(export, fmt, api)
            # The first chunk (header and first rows) before the status line: errors stay JSON.
            first = await body.__anext__()
    except (PublicError, DatabaseUnavailable) as exc:
        if body is not None:
            await body.aclose()  # type: ignore[attr-defined]
        return exception_response(exc)
    headers = {"cache-control": "no-store"}
    as_of = context.snapshot.as_of_text
    if as_of is not None:
        headers["x-data-as-of"] = as_of
    if output == "xlsx":
        headers["content-disposition"] = (
            f'attachment; filename="fature-{export.filename.removesuffix(".csv")}.xlsx"')
        headers["content-length"] = str(os.fstat(workbook.fileno()).st_size)
        return StreamingResponse(file_chunks(workbook), media_type=XLSX_MEDIA_TYPE, headers=headers)
    headers["content-disposition"] = f'attachment; filename="fature-{export.filename}"'
    assert body is not None
    return StreamingResponse(_rest(first, body), media_type="text/csv; charset=utf-8", headers=headers)


routes = [Route("/api/v1/exports/{report}", export_csv, methods=["GET"])]
