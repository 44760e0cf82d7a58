"""The payout workflow of a closed statement: approve it, mark it paid; and rejecting CPA
validations (one, or all of a referred user's; paid ones too: a chargeback is recovered in the
first open month). Each step moves the validations the statement pays along with it, and is
audited in its own transaction (who, when, the state before and after)."""

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
    """The validations a statement pays, whatever their amounts (0.00 too): those its CPA lines
    list, and those of the on-hold statements whose payable rolled into it: every on-hold
    statement of the affiliate since its last statement that was not on hold. A month with no
    statement between them does not break that chain (a statement on hold at 0.00 carries
    nothing, so the month after it may have none)."""
    return [
        r["validation_id"]
        for r in await conn.fetch(
            """
        SELECT l.validation_id FROM commission_statement_lines l
        WHERE l.affiliate_id = $1 AND l.month <= $2
          AND l.month > coalesce((SELECT max(s.month) FROM commission_statements s
                                  WHERE s.affiliate_id = $1 AND s.month < $2 AND s.status <> 'on_hold'),
                                 '-infinity'::date)
          AND l.validation_id IS NOT NULL AND l.kind IN ('cpa', 'cpa_adjustment')
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


_VALIDATION = "id, affiliate_id, referred_user_id, cpa_level, cpa_amount, cpa_status, validation_date"


async def reject_validation(conn: asyncpg.Connection, validation_id: int, reason: str, actor: str) -> None:
    """Set a validation's cpa_status to rejected, whatever its status (a chargeback found after
    it was paid too). Its open statement drops it at once; if its month is closed, the first
    open month gets a negative CPA adjustment naming it, which recovers what was paid (the
    minimum-payout hold applies to it as to any payable)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_VALIDATION} FROM affiliate_cpa_validations WHERE id = $1 FOR UPDATE", validation_id
        )
        if row is None:
            raise InvalidCommissionInput(f"id: no CPA validation {validation_id}")
        if row["cpa_status"] == "rejected":
            raise WorkflowConflict(f"id: validation {validation_id} is already rejected")
        await _reject(conn, row, reason, actor, "rejectCpaValidation")


async def reject_user_validations(
    conn: asyncpg.Connection, user_id: int, reason: str, actor: str
) -> list[int]:
    """Reject every validation of a referred user not rejected yet (one per upline level),
    each as ``reject_validation`` does and audited alike; the ids rejected, by id."""
    async with conn.transaction():
        rows = await conn.fetch(
            f"SELECT {_VALIDATION} FROM affiliate_cpa_validations WHERE referred_user_id = $1 "
            "ORDER BY id FOR UPDATE",
            user_id,
        )
        if not rows:
            raise InvalidCommissionInput(f"userId: user {user_id} has no CPA validations")
        pending = [r for r in rows if r["cpa_status"] != "rejected"]
        if not pending:
            raise WorkflowConflict(f"userId: every CPA validation of user {user_id} is already rejected")
        for row in pending:
            await _reject(conn, row, reason, actor, "rejectUserCpaValidations")
    return [r["id"] for r in pending]


async def _reject(
    conn: asyncpg.Connection, row: asyncpg.Record, reason: str, actor: str, action: str
) -> None:
    after = await conn.fetchrow(
        f"UPDATE affiliate_cpa_validations SET cpa_status = 'rejected' WHERE id = $1 RETURNING {_VALIDATION}",
        row["id"],
    )
    await conn.execute(
        "INSERT INTO cpa_validation_rejections (validation_id, reason, rejected_by) VALUES ($1, $2, $3)",
        row["id"],
        reason,
        actor,
    )
    await audit.record(
        conn,
        actor=actor,
        action=action,
        entity="cpa_validation",
        entity_id=row["id"],
        before=dict(row),
        after={**dict(after), "reason": reason},
    )
