"""A full load copies the source's bets straight into ``etl.src_bets`` and drops the broken
ones afterwards (recording each as an anomaly), so its columns accept what the source may
hold (NULLs the contract forbids). Incremental cycles still insert only usable bets.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = ("user_id", "valor_aposta", "valor_premio", "criado_em")


def upgrade() -> None:
    for column in COLUMNS:
        op.execute(f"ALTER TABLE etl.src_bets ALTER COLUMN {column} DROP NOT NULL")


def downgrade() -> None:
    op.execute(
        "DELETE FROM etl.src_bets WHERE user_id IS NULL OR valor_aposta IS NULL "
        "OR valor_premio IS NULL OR criado_em IS NULL"
    )
    for column in COLUMNS:
        op.execute(f"ALTER TABLE etl.src_bets ALTER COLUMN {column} SET NOT NULL")
