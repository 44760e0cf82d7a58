"""The ETL's working copies of the source are UNLOGGED: rebuilt from the source, never WAL'd.

``etl.src_*`` (the mirrors of the five source tables), ``etl.edges``, ``etl.user_upline`` and
``etl.user_daily`` are pure functions of the operation database, read only by the ETL. A full
load writes ~14 million rows into them at seed scale; as logged tables every row and every
index page went through the write-ahead log too (about 2 GB of WAL per full load).

PostgreSQL empties unlogged tables when it recovers from a crash (and a physical replica or
backup has them empty). ``etl.mirror_loaded`` is unlogged as well and holds one row once a
full load has filled the mirrors: when a cycle finds it empty while the cursors say data was
loaded, the mirrors were reset, and the cycle runs as a full load (sync.py). Everything clients
read (the robust tables, ``etl.affiliate_level_periods``, the ledger, the cursors, the run
history) stays logged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MIRRORS = (
    "etl.src_cadastro",
    "etl.src_tracked",
    "etl.src_depositos",
    "etl.src_saque",
    "etl.src_bets",
    "etl.edges",
    "etl.user_upline",
    "etl.user_daily",
)


def upgrade() -> None:
    for table in MIRRORS:
        op.execute(f"ALTER TABLE {table} SET UNLOGGED")
    op.execute("CREATE UNLOGGED TABLE etl.mirror_loaded (loaded_at timestamptz NOT NULL)")
    # SET UNLOGGED keeps the rows: mirrors already loaded stay usable.
    op.execute(
        "INSERT INTO etl.mirror_loaded SELECT now() "
        "WHERE EXISTS (SELECT 1 FROM etl.sync_cursors WHERE cursor_ts IS NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE etl.mirror_loaded")
    for table in MIRRORS:
        op.execute(f"ALTER TABLE {table} SET LOGGED")
