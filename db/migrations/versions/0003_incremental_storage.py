"""Storage tuned for the incremental cycle: room for in-page (HOT) updates, and an index for
the REV rows a cycle replaces.

- ``affiliate_referrals`` and ``etl.affiliate_level_periods`` are updated in place every cycle
  (referral totals, period sums) on columns no index covers: free space in each page lets
  PostgreSQL write the new row version beside the old one without touching any index.
- The REV rows of ``affiliate_financial_transactions`` are replaced per (affiliate, day,
  level); the general (affiliate, date) index also holds every bet and win row of that day
  (all dated at the local midnight), which a delete had to read and skip.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE affiliate_referrals SET (fillfactor = 85)",
    "ALTER TABLE etl.affiliate_level_periods SET (fillfactor = 85)",
    """
    CREATE INDEX affiliate_financial_transactions_rev
        ON affiliate_financial_transactions (affiliate_id, transaction_date, mlm_level)
        WHERE transaction_type = 'rev'
    """,
]

DOWNGRADE = [
    "DROP INDEX affiliate_financial_transactions_rev",
    "ALTER TABLE etl.affiliate_level_periods RESET (fillfactor)",
    "ALTER TABLE affiliate_referrals RESET (fillfactor)",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
