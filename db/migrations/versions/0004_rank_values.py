"""Ranks by value: one row per distinct total, not one rank per affiliate.

An affiliate's rank among the active ones is 1 + the number of active affiliates with a
higher total, so it is a function of its total alone. Storing the rank of each distinct total
(a few hundred rows) instead of each affiliate's rank means a cycle that lifts one affiliate
rewrites the few totals it passed, not the tens of thousands of affiliates below it.
``affiliates_ranked`` reads like ``affiliates`` with ``rank_cpa`` and ``rank_referrals``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# metric 'cpa' ranks total_cpa_earned, 'referrals' total_validated_referrals (active only).
RANK_VALUES = """
SELECT metric, value,
       (1 + coalesce(sum(n) OVER (PARTITION BY metric ORDER BY value DESC
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))::int AS rank
FROM (SELECT 'cpa'::text AS metric, total_cpa_earned AS value, count(*) AS n
      FROM affiliates WHERE status = 'active' GROUP BY total_cpa_earned
      UNION ALL
      SELECT 'referrals', total_validated_referrals, count(*)
      FROM affiliates WHERE status = 'active' GROUP BY total_validated_referrals) AS v
"""

RANKED_VIEW = """
CREATE VIEW affiliates_ranked AS
SELECT a.affiliate_id, a.name, a.email, a.phone, a.status, a.is_flagged, a.total_referrals,
       a.total_validated_referrals, a.total_deposits, a.total_withdrawals, a.total_bets,
       a.total_ggr, a.total_cpa_earned, a.total_rev_earned, a.total_network_size,
       rc.rank AS rank_cpa, rr.rank AS rank_referrals, a.registered_at, a.updated_at
FROM affiliates a
LEFT JOIN affiliate_rank_values rc
  ON a.status = 'active' AND rc.metric = 'cpa' AND rc.value = a.total_cpa_earned
LEFT JOIN affiliate_rank_values rr
  ON a.status = 'active' AND rr.metric = 'referrals' AND rr.value = a.total_validated_referrals
"""

UPGRADE = [
    """
    CREATE TABLE affiliate_rank_values (
        metric  text          NOT NULL CHECK (metric IN ('cpa', 'referrals')),
        value   numeric(18,2) NOT NULL,
        rank    integer       NOT NULL,
        PRIMARY KEY (metric, value)
    )
    """,
    f"INSERT INTO affiliate_rank_values (metric, value, rank) {RANK_VALUES}",
    "ALTER TABLE affiliates DROP COLUMN rank_cpa, DROP COLUMN rank_referrals",
    RANKED_VIEW,
]

DOWNGRADE = [
    "DROP VIEW affiliates_ranked",
    "ALTER TABLE affiliates ADD COLUMN rank_cpa integer, ADD COLUMN rank_referrals integer",
    """
    UPDATE affiliates a SET rank_cpa = rc.rank, rank_referrals = rr.rank
    FROM affiliate_rank_values rc, affiliate_rank_values rr
    WHERE a.status = 'active' AND rc.metric = 'cpa' AND rc.value = a.total_cpa_earned
      AND rr.metric = 'referrals' AND rr.value = a.total_validated_referrals
    """,
    "DROP TABLE affiliate_rank_values",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
