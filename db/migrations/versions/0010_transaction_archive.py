"""Retention of ``affiliate_financial_transactions`` (issue 15): the archived months and the
archive job's runs.

- ``etl.archived_months``: one row per month whose partition the retention job took (or is
  taking) offline. ``state`` is the job's progress, each step idempotent so that a killed run
  is finished by the next: ``detaching`` (the ETL no longer writes the month), ``detached``
  (the partition is a plain table), ``written`` (file and manifest fsynced), ``verified`` (the
  file read back matches the manifest), ``archived`` (the table dropped); ``restored`` when
  ``fature archive restore`` brought it back online (kept until ``keep_until``).
- ``etl.archive_runs``: the runs of the archive job and of restores (``/metrics``, ``fature etl
  status``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = ("""
CREATE TABLE etl.archived_months (
    month           date        PRIMARY KEY CHECK (extract(day FROM month) = 1),
    state           text        NOT NULL CHECK (state IN
                        ('detaching', 'detached', 'written', 'verified', 'archived', 'restored')),
    file            text,
    file_sha256     text,
    manifest_sha256 text,
    rows            bigint,
    sums            jsonb,
    started_at      timestamptz NOT NULL DEFAULT now(),
    archived_at     timestamptz,
    restored_at     timestamptz,
    keep_until      timestamptz
)""", """
CREATE TABLE etl.archive_runs (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('archive', 'restore', 'drop')),
    trigger     text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('running', 'success', 'failed', 'skipped')),
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    months      date[]      NOT NULL DEFAULT '{}',
    error       text
)""", "CREATE INDEX archive_runs_last_success ON etl.archive_runs (status, finished_at DESC)")

DOWNGRADE = ("DROP TABLE etl.archive_runs", "DROP TABLE etl.archived_months")


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
