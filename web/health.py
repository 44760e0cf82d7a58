"""/healthz (the process answers), /readyz (the database answers and the data is fresh
enough) and /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.backup_files import backup_directory, last_backup
from db.engine import DatabaseUnavailable
from db.reader import sql
from etl import archive, runs
from web.metrics import CONTENT_TYPE

_READY = sql(runs.LAST_SUCCESS)
_LAST_ARCHIVE = sql(archive.LAST_SUCCESS)
READY_TIMEOUT_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when the robust database answers and the last successful ETL finished less than
    ``FATURE_READY_MAX_ETL_AGE_SECONDS`` ago (and, when ``FATURE_READY_MAX_BACKUP_AGE_HOURS`` is
    set, the last successful backup is younger); 503 with the reasons otherwise. With read
    replicas, ``checks.replicas`` gives each one's rotation, lag and ETL run."""
    api = request.app.state.api
    limit = api.settings.ready_max_etl_age_seconds
    checks: dict[str, object] = {}
    reasons: list[str] = []
    try:
        rows = await asyncio.wait_for(api.database.fetch(_READY), READY_TIMEOUT_SECONDS)
        checks["database"] = "ok"
    except (DatabaseUnavailable, TimeoutError):
        rows = None
        checks["database"] = "unavailable"
        reasons.append("the robust database is unavailable")
    if rows is not None:
        finished = rows[0].finished_at if rows else None
        if finished is None:
            reasons.append("no successful ETL run yet")
            checks["last_etl_age_seconds"] = None
        else:
            age = (datetime.now(UTC) - finished).total_seconds()
            checks["last_etl_age_seconds"] = round(age, 1)
            if age > limit:
                reasons.append(f"the last successful ETL run is older than {limit} s")
    if api.nodes.replicas:
        # Each replica's state at its last check; one out of rotation leaves reads on the others
        # or the primary, so it is reported, not a reason to take this process out.
        checks["replicas"] = {node.name: node.status() for node in api.nodes.replicas}
        checks["replicas_in_rotation"] = sum(node.in_rotation for node in api.nodes.replicas)
    max_backup_hours = api.settings.ready_max_backup_age_hours
    if max_backup_hours is not None:
        backup = await asyncio.to_thread(last_backup, backup_directory(api.settings))
        if backup is None:
            checks["last_backup_age_hours"] = None
            reasons.append("no successful backup yet")
        else:
            hours = (datetime.now(UTC) - backup.created).total_seconds() / 3600
            checks["last_backup_age_hours"] = round(hours, 2)
            if hours > max_backup_hours:
                reasons.append(f"the last successful backup is older than {max_backup_hours:g} h")
    body: dict[str, object] = {"status": "ready" if not reasons else "not ready", "checks": checks}
    if reasons:
        body["reasons"] = reasons
    return JSONResponse(body, status_code=200 if not reasons else 503)


async def metrics(request: Request) -> Response:
    api = request.app.state.api
    backup = await asyncio.to_thread(last_backup, backup_directory(api.settings))
    if backup is None:
        api.metrics.backup_seen(0.0, 0, 0.0)
    else:
        api.metrics.backup_seen(backup.created.timestamp(), backup.size_bytes, backup.duration_s)
    try:
        archived = await asyncio.wait_for(api.database.fetch(_LAST_ARCHIVE), READY_TIMEOUT_SECONDS)
        api.metrics.archive_last.set(archived[0].finished_at.timestamp() if archived else 0.0)
    except (DatabaseUnavailable, TimeoutError):
        api.metrics.archive_last.set(float("nan"))  # unknown, never a failed scrape
    return Response(api.metrics.exposition(), media_type=CONTENT_TYPE)
