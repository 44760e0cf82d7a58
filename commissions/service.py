"""The commissions API: what the GraphQL resolvers, the exports and the scheduler call.

Plain values in (ids, dates, decimals, the actor's name, an asyncpg connection of the robust
database or its URL), plain records out. A refusal is a ``commissions.errors.CommissionError``
whose message is written for the client; the edge gives it its code. Changes are audited.

Plans and criteria:
    plans(conn, tz, plan_ids=None) -> list[Plan]
    current_plan_id(conn, tz, affiliate_id) -> int
    create_plan(conn, tz, name, terms: PlanTerms, actor) -> Plan
    schedule_version(conn, tz, plan_id, effective_from, terms: PlanTerms, actor) -> PlanVersion
    assign_plan(conn, tz, affiliate_id, plan_id, actor, effective_from=None) -> Assignment
    criteria_versions(conn) -> list[Record]
    schedule_criteria(conn, tz, effective_from, criteria: QualificationTerms, actor) -> Record
    audit_entries(conn, *, entity, entity_id, before_id, first) -> list[LogEntry]
    simulate(conn, tz, terms: PlanTerms, month, *, first, after) -> Simulation

Statements (``month``: its first local day):
    statement(conn, tz, affiliate_id, month) -> StatementRecord | None
    statements_page(conn, tz, month, *, affiliate_id, status, after, first) -> list[StatementRecord]
    month_statements(conn, tz, month, *, affiliate_id, status, after, limit)
        -> AsyncIterator[StatementRecord]  (inside the caller's transaction)
    statement_lines(conn, tz, affiliate_id, month, *, is_open) -> list[Mapping]
    close_month(conn, tz, month, actor) -> CloseResult
    close_previous_month(robust_url, tz, actor="scheduler") -> CloseResult | None
    approve_statement(conn, affiliate_id, month, actor) -> StatementRecord
    mark_statement_paid(conn, affiliate_id, month, reference, actor) -> StatementRecord
    reject_validation(conn, validation_id, reason, actor) -> None  (paid ones too: a chargeback)
    reject_user_validations(conn, user_id, reason, actor) -> list[int]  (every level's row of a user)
"""

from __future__ import annotations

from commissions.audit import LogEntry
from commissions.audit import entries as audit_entries
from commissions.close import CloseResult, close_month, close_previous_month
from commissions.criteria import criteria_versions, schedule_criteria
from commissions.inputs import PlanTerms, QualificationTerms
from commissions.plans import (
    Assignment,
    Plan,
    PlanVersion,
    assign_plan,
    create_plan,
    current_plan_id,
    plans,
    schedule_version,
)
from commissions.simulation import Amounts, Comparison, Simulation, simulate
from commissions.statements import (
    StatementRecord,
    month_statements,
    statement,
    statement_lines,
    statements_page,
)
from commissions.workflow import (
    approve_statement,
    mark_statement_paid,
    reject_user_validations,
    reject_validation,
)

__all__ = [
    "Amounts",
    "Assignment",
    "CloseResult",
    "Comparison",
    "LogEntry",
    "Plan",
    "PlanTerms",
    "PlanVersion",
    "QualificationTerms",
    "Simulation",
    "StatementRecord",
    "approve_statement",
    "assign_plan",
    "audit_entries",
    "close_month",
    "close_previous_month",
    "create_plan",
    "criteria_versions",
    "current_plan_id",
    "mark_statement_paid",
    "month_statements",
    "plans",
    "reject_user_validations",
    "reject_validation",
    "schedule_criteria",
    "schedule_version",
    "simulate",
    "statement",
    "statement_lines",
    "statements_page",
]
