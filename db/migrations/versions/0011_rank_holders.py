"""Each ranked total's number of holders, so a cycle re-ranks without counting affiliates.

``affiliate_rank_values`` (revision 0004) stores the rank of each distinct total; a rank is
1 + the number of active affiliates with a higher total, which the ETL recounted over every
active affiliate whenever one affiliate's row changed: a cost that followed the number of
affiliates, not the cycle's batch (issue 17: 25 ms at seed scale, 78 ms at three times it).
``holders`` is the number of active affiliates holding the total; a cycle moves it by what its
touched affiliates' rows were and are, and a rank is then a sum over the few hundred totals.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE affiliate_rank_values ADD COLUMN holders integer",
    """
    UPDATE affiliate_rank_values r SET holders = n.holders
    FROM (SELECT 'cpa'::text AS metric, total_cpa_earned AS value, count(*)::int AS holders
          FROM affiliates WHERE status = 'active' GROUP BY total_cpa_earned
          UNION ALL
          SELECT 'referrals', total_validated_referrals, count(*)::int
          FROM affiliates WHERE status = 'active' GROUP BY total_validated_referrals) AS n
    WHERE r.metric = n.metric AND r.value = n.value
    """,
    # A total nobody active holds had no business in the table (the ETL deletes such rows).
    "DELETE FROM affiliate_rank_values WHERE holders IS NULL",
    "ALTER TABLE affiliate_rank_values ALTER COLUMN holders SET NOT NULL",
]

DOWNGRADE = ["ALTER TABLE affiliate_rank_values DROP COLUMN holders"]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
