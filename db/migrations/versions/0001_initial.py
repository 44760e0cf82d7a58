"""The robust database: the six tables, two views, commission configuration, ETL state.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from pathlib import Path

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQL = Path(__file__).resolve().parents[2] / "sql" / "robust_schema.sql"


def _statements(sql: str) -> list[str]:
    """Split a plain DDL script (no dollar-quoted bodies) into single statements."""
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in text.split(";") if part.strip()]


def upgrade() -> None:
    for statement in _statements(_SQL.read_text()):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(
        """
        DROP VIEW IF EXISTS v_affiliate_ranking;
        DROP VIEW IF EXISTS v_affiliate_dashboard;
        DROP TABLE IF EXISTS affiliate_periodic_summaries, affiliate_financial_transactions,
            affiliate_cpa_validations, affiliate_referrals, affiliate_mlm_structure, affiliates,
            affiliate_plan_assignments, qualification_criteria_versions,
            commission_plan_versions, commission_plans CASCADE;
        DROP SEQUENCE IF EXISTS affiliate_financial_transactions_id_seq;
        DROP SCHEMA IF EXISTS etl CASCADE;
        """
    ):
        op.execute(statement)
