"""The payout workflow of a closed statement: approve it, mark it paid; and rejecting a CPA
validation. Each step moves the validations the statement pays along with it, and is audited
in its own transaction (who, when, the state before and after)."""

from __future__ import annotations

from datetime import date

import asyncpg

from commissions import audit
from commissions.errors import InvalidCommissionInput, WorkflowConflict
from commissions.statements import STORED, StatementRecord


async def _stored(conn: asyncpg.Connection, affiliate_id: int, month: date) -> asyncpg.Record:
    row = await conn.fetchrow(STORED + " FOR UPDATE", affiliate_id, month)
    if row is None:
        raise WorkflowConflict(
            f"id: statement {affiliate_id}:{month:%Y-%m} is not closed "
            "(open months cannot be approved or paid)"
        )
    return row


async def _validations_paid_by(conn: asyncpg.Connection, statement: asyncpg.Record) -> list[int]:
    """The validations a statement pays: its CPA lines and those of the on-hold months rolled
    into it (the consecutive on-hold statements just before it)."""
    return [
        r["validation_id"]
        for r in await conn.fetch(
            """
        WITH RECURSIVE chain AS (
            SELECT $1::bigint AS affiliate_id, $2::date AS month
            UNION ALL
            SELECT s.affiliate_id, s.month FROM commission_statements s
            JOIN chain c ON s.affiliate_id = c.affiliate_id AND s.month = (c.month - interval '1 month')::date
            WHERE s.status = 'on_hold'
        )
        SELECT l.validation_id FROM commission_statement_lines l JOIN chain c
          ON l.affiliate_id = c.affiliate_id AND l.month = c.month
        WHERE l.validation_id IS NOT NULL AND l.kind IN ('cpa', 'cpa_adjustment') AND l.amount > 0
        """,
            statement["affiliate_id"],
            statement["month"],
        )
    ]


def _workflow(row: asyncpg.Record) -> dict[str, object]:
    return {
        k: row[k] for k in ("status", "approved_at", "approved_by", "paid_at", "paid_by", "payment_reference")
    }


async def _advance_paid_validations(
    conn: asyncpg.Connection,
    before: asyncpg.Record,
    after: asyncpg.Record,
    status: str,
    from_statuses: tuple[str, ...],
    actor: str,
    action: str,
) -> None:
    """The workflow step's other half: the validations the statement pays follow it to
    ``status``, and the step is audited (who, when, before and after)."""
    await conn.execute(
        "UPDATE affiliate_cpa_validations SET cpa_status = $2 "
        "WHERE id = ANY($1::bigint[]) AND cpa_status = ANY($3::text[])",
        await _validations_paid_by(conn, before),
        status,
        list(from_statuses),
    )
    await audit.record(
        conn,
        actor=actor,
        action=action,
        entity="commission_statement",
        entity_id=f"{before['affiliate_id']}:{before['month']:%Y-%m}",
        before=_workflow(before),
        after=_workflow(after),
    )


async def approve_statement(
    conn: asyncpg.Connection, affiliate_id: int, month: date, actor: str
) -> StatementRecord:
    """closed -> approved; the pending validations it pays become approved."""
    async with conn.transaction():
        row = await _stored(conn, affiliate_id, month)
        if row["status"] != "closed":
            raise WorkflowConflict(
                f"id: only a closed statement can be approved; this one is {row['status']}")
        after = await conn.fetchrow(
            "UPDATE commission_statements SET status = 'approved', approved_at = now(), approved_by = $2 "
            "WHERE id = $1 RETURNING *",
            row["id"],
            actor,
        )
        await _advance_paid_validations(conn, row, after, "approved", ("pending",), actor, "approveStatement")
    return StatementRecord.from_stored(after)


async def mark_statement_paid(
    conn: asyncpg.Connection, affiliate_id: int, month: date, reference: str, actor: str
) -> StatementRecord:
    """approved -> paid with the payment's reference; the validations it pays become paid."""
    async with conn.transaction():
        row = await _stored(conn, affiliate_id, month)
        if row["status"] != "approved":
            raise WorkflowConflict(f"id: only an approved statement can be paid; this one is {row['status']}")
        after = await conn.fetchrow(
            "UPDATE commission_statements SET status = 'paid', paid_at = now(), paid_by = $2, "
            "payment_reference = $3 WHERE id = $1 RETURNING *",
            row["id"],
            actor,
            reference,
        )
        await _advance_paid_validations(
            conn, row, after, "paid", ("pending", "approved"), actor, "markStatementPaid"
        )
    return StatementRecord.from_stored(after)


async def reject_validation(conn: asyncpg.Connection, validation_id: int, reason: str, actor: str) -> None:
    """Set a validation's cpa_status to rejected. Its open statement drops it at once; if its
    month is closed, the next open month gets a negative adjustment naming it."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, affiliate_id, referred_user_id, cpa_level, cpa_amount, cpa_status, validation_date "
            "FROM affiliate_cpa_validations WHERE id = $1 FOR UPDATE",
            validation_id,
        )
        if row is None:
            raise InvalidCommissionInput(f"id: no CPA validation {validation_id}")
        if row["cpa_status"] in ("rejected", "paid"):
            raise WorkflowConflict(f"id: validation {validation_id} is already {row['cpa_status']}")
        after = await conn.fetchrow(
            "UPDATE affiliate_cpa_validations SET cpa_status = 'rejected' WHERE id = $1 "
            "RETURNING id, affiliate_id, referred_user_id, cpa_level, cpa_amount, cpa_status, "
            "validation_date",
            validation_id,
        )
        await conn.execute(
            "INSERT INTO cpa_validation_rejections (validation_id, reason, rejected_by) VALUES ($1, $2, $3)",
            validation_id,
            reason,
            actor,
        )
        await audit.record(
            conn,
            actor=actor,
            action="rejectCpaValidation",
            entity="cpa_validation",
            entity_id=validation_id,
            before=dict(row),
            after={**dict(after), "reason": reason},
        )
