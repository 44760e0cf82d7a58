"""The exports endpoint, ``GET /api/v1/exports/{report}``: a report read in one snapshot and
sent as CSV (the default) or XLSX (``format=xlsx``).

Constant memory: rows come from a server-side cursor in chunks (``reports.CHUNK``) and each
chunk is written and sent before the next is read. The first chunk is read before the answer
starts, so bad input and an unreachable database still get a JSON error with its status.

``format=xlsx``: the same rows and cells in a workbook written to a temporary file and
streamed back once complete (``web.exports.xlsx``), so any error is still a JSON error.
``sep``/``decimal`` are CSV options (``web.exports.csv_format``) and refused with
``format=xlsx``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from commissions.errors import CommissionError
from db.engine import DatabaseUnavailable, QueryTimeout, is_timeout, timeout_ms
from db.reader import UNAVAILABLE_ERRORS
from resolvers.errors import PublicError, ServiceUnavailable
from web.errors import error_response, exception_response
from web.exports.csv_format import CsvFormat, parse_format
from web.exports.params import parse_output
from web.exports.reports import BUILDERS, REPORTS, Export
from web.exports.xlsx import XLSX_MEDIA_TYPE, file_chunks, write_workbook
from web.state import ApiState, RequestContext, viewer_for

log = logging.getLogger("fature.api")


@asynccontextmanager
async def _snapshot(api: ApiState) -> AsyncIterator[AsyncConnection]:
    """One pooled connection in a read-only repeatable-read transaction: a consistent report,
    and the transaction server-side cursors need. Each of its statements (each chunk's fetch)
    may run ``long_read_timeout_seconds`` (``SET LOCAL``: the connection's own read timeout
    is back at the end of the transaction)."""
    milliseconds = timeout_ms(api.settings.long_read_timeout_seconds)
    async with api.database.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with conn.begin():
            # Also opens the driver's transaction (it does so lazily).
            await conn.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds:d}")
            yield conn


async def _row_chunks(export: Export, api: ApiState) -> AsyncGenerator[Sequence[Sequence[Any]], None]:
    """The report's rows in chunks, read in one snapshot; a lost database is a 503, and so is
    a statement cancelled by its timeout (``QueryTimeout``, the code TIMEOUT)."""
    try:
        async with _snapshot(api) as conn:
            async for chunk in export.rows(conn):
                yield chunk
    except UNAVAILABLE_ERRORS as exc:
        if is_timeout(exc):  # asyncpg's QueryCanceledError is an OperatorInterventionError
            raise QueryTimeout() from exc
        raise ServiceUnavailable() from exc
    except sa_exc.DBAPIError as exc:
        if is_timeout(exc):
            raise QueryTimeout() from exc
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
    if report not in BUILDERS:
        return error_response("NOT_FOUND", f"no export named {report[:40]!r}; reports: {', '.join(REPORTS)}")
    context = RequestContext.build(api, viewer_for(request), request)
    request.state.context = context
    body: AsyncIterator[bytes] | None = None
    try:
        output = parse_output(request.query_params)
        fmt = parse_format(request.query_params)
        export = await BUILDERS[report](context, request.query_params)
        if output == "xlsx":
            workbook = await write_workbook(_row_chunks(export, api), report, export.header)
        else:
            body = _encode(export, fmt, api)
            # The first chunk (header and first rows) before the status line: errors stay JSON.
            first = await body.__anext__()
    except (PublicError, CommissionError, DatabaseUnavailable) as exc:
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
