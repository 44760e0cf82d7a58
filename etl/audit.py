"""The commission audit log: who changed what, when, with the state before and after.

Every admin mutation of the Config and Commission services writes one row in the same
transaction as its change, so the log and the data never disagree.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money stays exact in the log
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def as_json(value: Any) -> str | None:
    """A record or mapping as JSON text (decimals as strings), None as SQL NULL."""
    if value is None:
        return None
    if isinstance(value, asyncpg.Record):
        value = dict(value)
    return orjson.dumps(value, default=_default).decode()


async def record(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    before: Any = None,
    after: Any = None,
) -> int:
    """Write one audit row; returns its id. Call inside the transaction of the change."""
    return await conn.fetchval(
        "INSERT INTO commission_audit_log (actor, action, entity, entity_id, before, after) "
        "VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb) RETURNING id",
        actor,
        action,
        entity,
        None if entity_id is None else str(entity_id),
        as_json(before),
        as_json(after),
    )
