"""The edits made to the schema file after revision 0001 shipped, as a migration of their own.

Revision 0001 used to read ``db/sql/robust_schema.sql`` at run time, and that file was edited
three times afterwards (b657dbb, 39be838, e50b491, all before revision 0002), so databases
built before and after the edits differ. 0001 now carries its original text; this revision
brings a database built from it to what the edited text gave:

- ``affiliates`` leaves room in each page (fillfactor 70) for in-page rank and total updates;
- the ranking indexes order active affiliates by value (``affiliates_ranking_cpa``,
  ``affiliates_ranking_referrals``); the original indexes on the rank columns went with those
  columns in 0004;
- ``affiliate_referrals_by_level_date`` serves referrals by level, newest first;
- ``affiliate_financial_transactions`` has no primary key (the full load drops the table's
  indexes and builds them after the load; a partitioned table's key cannot be re-attached
  from a built index);
- ``affiliate_financial_transactions_user`` also covers ``transaction_date`` (the cycle's
  deletes by user match the day too);
- ``etl.user_daily.first_bet_at``, which the validation's activity days read.

Every statement is a no-op on a database built from the edited text, so both converge here.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = [
    # Only new pages get the free space; existing rows move as they are updated.
    "ALTER TABLE affiliates SET (fillfactor = 70)",
    """
    CREATE INDEX IF NOT EXISTS affiliates_ranking_cpa
        ON affiliates (total_cpa_earned DESC, affiliate_id) WHERE status = 'active'
    """,
    """
    CREATE INDEX IF NOT EXISTS affiliates_ranking_referrals
        ON affiliates (total_validated_referrals DESC, affiliate_id) WHERE status = 'active'
    """,
    """
    CREATE INDEX IF NOT EXISTS affiliate_referrals_by_level_date
        ON affiliate_referrals (referrer_id, mlm_level, referral_date DESC, referred_id)
    """,
    # Dropping the parent's key drops the partitions' too; id and transaction_date keep their
    # own NOT NULL.
    "ALTER TABLE affiliate_financial_transactions DROP CONSTRAINT IF EXISTS affiliate_financial_transactions_pkey",
    # Same name, one more column: rebuild only when the index lacks it (a table of millions
    # of rows on a database built from the edited text is left alone).
    """
    DO $$
    BEGIN
        IF (SELECT array_agg(a.attname::text ORDER BY k.n)
            FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indexrelid = to_regclass('affiliate_financial_transactions_user'))
           IS DISTINCT FROM ARRAY['user_id', 'transaction_type', 'transaction_date'] THEN
            DROP INDEX IF EXISTS affiliate_financial_transactions_user;
            CREATE INDEX affiliate_financial_transactions_user
                ON affiliate_financial_transactions (user_id, transaction_type, transaction_date);
        END IF;
    END $$
    """,
    # A mirror without first_bet_at could not have been maintained by any release since the
    # column appeared: when it is added here, empty etl.mirror_loaded so that the next cycle
    # rebuilds the mirrors with a full load (migration 0005) instead of trusting NULLs.
    """
    DO $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_attribute
                       WHERE attrelid = 'etl.user_daily'::regclass
                         AND attname = 'first_bet_at' AND NOT attisdropped) THEN
            ALTER TABLE etl.user_daily ADD COLUMN first_bet_at timestamptz;
            TRUNCATE etl.mirror_loaded;
        END IF;
    END $$
    """,
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # Nothing to undo: the code of every revision from 0002 on was written against the edited
    # file, so this shape is what revision 0006 means in practice. Restoring the original
    # text's key and indexes would give a database no release after 0001 ran on.
    pass
