"""Commissions: plan assignment history, the audit log, monthly statements and their lines,
closed months, CPA rejections. Closed statements and their lines are frozen by triggers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# One statement per string: the trigger bodies are dollar-quoted, so no naive splitting.
UPGRADE = [
    # Who is on which plan from which local day; the ETL's affiliate_plan_assignments keeps the
    # current row, this keeps the history (assignments are never retroactive).
    """
    CREATE TABLE affiliate_plan_history (
        affiliate_id    bigint      NOT NULL,
        effective_from  date        NOT NULL,
        plan_id         bigint      NOT NULL REFERENCES commission_plans (id),
        assigned_at     timestamptz NOT NULL DEFAULT now(),
        assigned_by     text        NOT NULL DEFAULT 'migration',
        PRIMARY KEY (affiliate_id, effective_from)
    )
    """,
    """
    INSERT INTO affiliate_plan_history (affiliate_id, effective_from, plan_id, assigned_at)
    SELECT affiliate_id, DATE '1900-01-01', plan_id, assigned_at FROM affiliate_plan_assignments
    """,
    # Every admin change: who, when, what, before and after.
    """
    CREATE TABLE commission_audit_log (
        id         bigserial   PRIMARY KEY,
        at         timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor      text        NOT NULL,
        action     text        NOT NULL,
        entity     text        NOT NULL,
        entity_id  text,
        before     jsonb,
        after      jsonb
    )
    """,
    "CREATE INDEX commission_audit_log_entity ON commission_audit_log (entity, entity_id, id)",
    """
    CREATE TABLE cpa_validation_rejections (
        validation_id  bigint      PRIMARY KEY REFERENCES affiliate_cpa_validations (id),
        reason         text        NOT NULL CHECK (length(reason) > 0),
        rejected_at    timestamptz NOT NULL DEFAULT now(),
        rejected_by    text        NOT NULL
    )
    """,
    """
    CREATE TABLE commission_months (
        month      date        PRIMARY KEY CHECK (extract(day FROM month) = 1),
        closed_at  timestamptz NOT NULL DEFAULT now(),
        closed_by  text        NOT NULL
    )
    """,
    """
    CREATE TABLE commission_statements (
        id                  bigserial     PRIMARY KEY,
        affiliate_id        bigint        NOT NULL,
        month               date          NOT NULL CHECK (extract(day FROM month) = 1),
        status              text          NOT NULL
                            CHECK (status IN ('closed', 'on_hold', 'approved', 'paid')),
        plan_id             bigint        NOT NULL,
        plan_version_id     bigint        NOT NULL,
        negative_carryover  boolean       NOT NULL,
        min_payout          numeric(14,2) NOT NULL,
        cpa_validated       numeric(18,2) NOT NULL,
        cpa_rejected        numeric(18,2) NOT NULL,
        cpa                 numeric(18,2) NOT NULL,
        rev                 numeric(18,2) NOT NULL,
        cpa_adjustments     numeric(18,2) NOT NULL,
        rev_adjustments     numeric(18,2) NOT NULL,
        carryover_in        numeric(18,2) NOT NULL,
        rev_payable         numeric(18,2) NOT NULL,
        carryover_out       numeric(18,2) NOT NULL,
        held_in             numeric(18,2) NOT NULL,
        payable             numeric(18,2) NOT NULL,
        held_out            numeric(18,2) NOT NULL,
        closed_at           timestamptz   NOT NULL DEFAULT now(),
        approved_at         timestamptz,
        approved_by         text,
        paid_at             timestamptz,
        paid_by             text,
        payment_reference   text,
        UNIQUE (affiliate_id, month)
    )
    """,
    "CREATE INDEX commission_statements_month ON commission_statements (month, affiliate_id)",
    # for_month: the month the money is dated in (the statement's month, or the closed month
    # an adjustment corrects). family + (validation_id | level, day) is the line's key: what is
    # accounted for a month is the sum of its lines by key, across all statements.
    """
    CREATE TABLE commission_statement_lines (
        id                bigserial     PRIMARY KEY,
        statement_id      bigint        NOT NULL REFERENCES commission_statements (id),
        affiliate_id      bigint        NOT NULL,
        month             date          NOT NULL,
        for_month         date          NOT NULL,
        family            text          NOT NULL CHECK (family IN ('cpa', 'rev')),
        kind              text          NOT NULL
                          CHECK (kind IN ('cpa', 'cpa_rejected', 'rev', 'cpa_adjustment', 'rev_adjustment')),
        validation_id     bigint,
        referred_user_id  bigint,
        level             smallint      NOT NULL CHECK (level BETWEEN 1 AND 5),
        day               date          NOT NULL,
        amount            numeric(18,2) NOT NULL,
        description       text          NOT NULL
    )
    """,
    "CREATE INDEX commission_statement_lines_statement ON commission_statement_lines (statement_id, id)",
    """CREATE INDEX commission_statement_lines_accounted
       ON commission_statement_lines (affiliate_id, for_month, family)""",
    # Frozen: lines never change; a statement's money never changes, only its workflow columns.
    """
    CREATE FUNCTION commission_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'commission_statement_lines' OR TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'closed statements are frozen (% on %)', TG_OP, TG_TABLE_NAME;
        END IF;
        IF (NEW.affiliate_id, NEW.month, NEW.plan_version_id, NEW.cpa_validated, NEW.cpa_rejected,
            NEW.cpa, NEW.rev, NEW.cpa_adjustments, NEW.rev_adjustments, NEW.carryover_in,
            NEW.rev_payable, NEW.carryover_out, NEW.held_in, NEW.payable, NEW.held_out,
            NEW.closed_at)
           IS DISTINCT FROM
           (OLD.affiliate_id, OLD.month, OLD.plan_version_id, OLD.cpa_validated, OLD.cpa_rejected,
            OLD.cpa, OLD.rev, OLD.cpa_adjustments, OLD.rev_adjustments, OLD.carryover_in,
            OLD.rev_payable, OLD.carryover_out, OLD.held_in, OLD.payable, OLD.held_out,
            OLD.closed_at) THEN
            RAISE EXCEPTION 'closed statements are frozen: only the workflow status may change';
        END IF;
        RETURN NEW;
    END $$
    """,
    """CREATE TRIGGER commission_statements_frozen BEFORE UPDATE OR DELETE ON commission_statements
       FOR EACH ROW EXECUTE FUNCTION commission_frozen()""",
    """CREATE TRIGGER commission_statement_lines_frozen BEFORE UPDATE OR DELETE
       ON commission_statement_lines FOR EACH ROW EXECUTE FUNCTION commission_frozen()""",
]

DOWNGRADE = [
    "DROP TABLE IF EXISTS commission_statement_lines, commission_statements, commission_months, "
    "cpa_validation_rejections, commission_audit_log, affiliate_plan_history CASCADE",
    "DROP FUNCTION IF EXISTS commission_frozen()",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
