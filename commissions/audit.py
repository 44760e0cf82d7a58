"""The commission audit log: who changed what, when, with the state before and after.

Every change of plans, criteria and statements writes one row in the same transaction as
the change, so the log and the data never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class LogEntry:
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str | None
    before: Any  # the JSON as stored, decoded; None when there was no state
    after: Any


async def entries(
    conn: asyncpg.Connection, *, entity: str | None, entity_id: str | None, before_id: int | None, first: int
) -> list[LogEntry]:
    """The log, newest first, optionally of one entity; ``before_id`` pages with an entry id."""
    rows = await conn.fetch(
        "SELECT id, at, actor, action, entity, entity_id, before::text AS before, after::text AS after "
        "FROM commission_audit_log WHERE ($1::text IS NULL OR entity = $1) "
        "AND ($2::text IS NULL OR entity_id = $2) AND ($3::bigint IS NULL OR id < $3) "
        "ORDER BY id DESC LIMIT $4", entity, entity_id, before_id, first)
    return [
        LogEntry(
            id=r["id"], at=r["at"], actor=r["actor"], action=r["action"], entity=r["entity"],
            entity_id=r["entity_id"], before=orjson.loads(r["before"]) if r["before"] else None,
            after=orjson.loads(r["after"]) if r["after"] else None,
        )
        for r in rows
    ]
