"""The queue of configuration changes the ETL applies, and terms that start on a local day.

A change of terms (a criteria version, a plan version, a plan assignment) is queued by a
trigger in the transaction that makes it, so it commits with it: the ETL cycle consumes the
queue in its own transaction (etl/config_changes.py) and applies each change exactly once,
whatever the timing of the two transactions (a change committed while a cycle runs stays
queued for the next one). Before this, the cycle looked for changes by ``created_at`` since
the last run's start, which missed a change whose transaction began before a cycle's snapshot
and committed after it.

- A plan assignment that puts an affiliate on the plan it already had (the first assignment's
  "since always" row, which keeps the past on the default plan) changes nothing and is not
  queued: the next cycle does not re-rate the affiliate's whole history.
- ``affiliate_plan_assignments`` (revision 0001: "who is on which plan now") is dropped:
  assignments take an effective date, so "now" is ``affiliate_plan_history`` read at a date.
  Every row it held has been in ``affiliate_plan_history`` since revision 0002 (nothing reads
  it).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE etl.config_changes (
        id              bigserial   PRIMARY KEY,
        kind            text        NOT NULL
                        CHECK (kind IN ('criteria', 'plan_version', 'plan_assignment')),
        effective_from  date        NOT NULL,
        affiliate_id    bigint,     -- an assignment's affiliate; NULL: every affiliate
        queued_at       timestamptz NOT NULL DEFAULT clock_timestamp()
    )
    """,
    """
    CREATE FUNCTION etl.queue_config_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'affiliate_plan_history' THEN
            IF TG_OP = 'INSERT' AND NEW.plan_id = coalesce(
                   (SELECT h.plan_id FROM affiliate_plan_history h
                    WHERE h.affiliate_id = NEW.affiliate_id AND h.effective_from < NEW.effective_from
                    ORDER BY h.effective_from DESC LIMIT 1),
                   (SELECT p.id FROM commission_plans p WHERE p.is_default)) THEN
                RETURN NULL;  -- the plan the affiliate was on anyway: nothing is priced anew
            END IF;
            IF TG_OP = 'UPDATE' AND NEW.plan_id = OLD.plan_id AND NEW.effective_from = OLD.effective_from THEN
                RETURN NULL;
            END IF;
            INSERT INTO etl.config_changes (kind, effective_from, affiliate_id)
            SELECT 'plan_assignment', d, a
            FROM (VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.effective_from ELSE NEW.effective_from END,
                          CASE WHEN TG_OP = 'DELETE' THEN OLD.affiliate_id ELSE NEW.affiliate_id END))
                 AS c (d, a);
        ELSE
            INSERT INTO etl.config_changes (kind, effective_from)
            VALUES (CASE WHEN TG_TABLE_NAME = 'qualification_criteria_versions' THEN 'criteria'
                         ELSE 'plan_version' END,
                    CASE WHEN TG_OP = 'DELETE' THEN OLD.effective_from ELSE NEW.effective_from END);
        END IF;
        RETURN NULL;
    END $$
    """,
    """CREATE TRIGGER queue_config_change AFTER INSERT OR UPDATE OR DELETE ON commission_plan_versions
       FOR EACH ROW EXECUTE FUNCTION etl.queue_config_change()""",
    """CREATE TRIGGER queue_config_change AFTER INSERT OR UPDATE OR DELETE ON qualification_criteria_versions
       FOR EACH ROW EXECUTE FUNCTION etl.queue_config_change()""",
    """CREATE TRIGGER queue_config_change AFTER INSERT OR UPDATE OR DELETE ON affiliate_plan_history
       FOR EACH ROW EXECUTE FUNCTION etl.queue_config_change()""",
    "DROP TABLE affiliate_plan_assignments",
]

DOWNGRADE = [
    """
    CREATE TABLE affiliate_plan_assignments (
        affiliate_id  bigint      PRIMARY KEY,
        plan_id       bigint      NOT NULL REFERENCES commission_plans (id),
        assigned_at   timestamptz NOT NULL DEFAULT now()
    )
    """,
    # Who is on which plan today, as the table used to say.
    """
    INSERT INTO affiliate_plan_assignments (affiliate_id, plan_id, assigned_at)
    SELECT DISTINCT ON (affiliate_id) affiliate_id, plan_id, assigned_at
    FROM affiliate_plan_history WHERE effective_from <= current_date
    ORDER BY affiliate_id, effective_from DESC
    """,
    "DROP TRIGGER queue_config_change ON affiliate_plan_history",
    "DROP TRIGGER queue_config_change ON qualification_criteria_versions",
    "DROP TRIGGER queue_config_change ON commission_plan_versions",
    "DROP FUNCTION etl.queue_config_change()",
    "DROP TABLE etl.config_changes",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
