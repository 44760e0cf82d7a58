"""REV corrections settle the months they correct again (issue 14): what each closed month
stands settled at is stored, so the next correction starts from it.

- ``commission_rev_settlements``: one row per closed month a statement settled again (its
  ``for_month``), stored when that statement closes: the month's carryover rule, its balance
  carried in, its REV, what it is paid for it and what it carries out, before and after, and
  ``amount`` (what the statement pays for it: paid now - paid before). A month stands as its
  latest row, else as its statement says. Frozen like the lines.
- ``commission_statements.rev_settlements``: the sum of a statement's rows' amounts (part of
  ``rev_payable``), frozen with the other money columns.

Statements closed before this revision settled REV corrections by the old rules: those of
months closed with negative carryover on joined the closing month's own REV balance, those of
months closed with it off paid max(0, the month's REV after) - max(0, before). Their rows are
written here so that later corrections start from what was really paid:

- a statement whose balance took in corrections of carryover-on months gets a row for its own
  month (``for_month = month``, ``amount`` 0): its REV is its own plus those corrections;
- each carryover-off month a statement corrected gets a row in that statement with the month's
  REV before and after and what it paid (the statement's ``rev_settlements`` is their sum).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The carryover rule a closed month was settled with: its statement's, else (no statement: the
# affiliate had nothing) the terms in force on its last day (commissions.lines at this revision).
_RULE = """
coalesce(
  (SELECT s.negative_carryover FROM commission_statements s
   WHERE s.affiliate_id = c.affiliate_id AND s.month = c.for_month),
  (SELECT v.negative_carryover FROM commission_plan_versions v
   WHERE v.plan_id = coalesce(
           (SELECT h.plan_id FROM affiliate_plan_history h
            WHERE h.affiliate_id = c.affiliate_id AND h.effective_from <= c.last_day
            ORDER BY h.effective_from DESC LIMIT 1),
           (SELECT p.id FROM commission_plans p WHERE p.is_default))
   ORDER BY v.effective_from > c.last_day,
            CASE WHEN v.effective_from <= c.last_day THEN v.effective_from END DESC NULLS LAST,
            v.effective_from
   LIMIT 1))"""

# Each statement's REV corrections by the month they corrected, with that month's rule.
_CORRECTIONS = f"""
SELECT c.*, {_RULE} AS negative_carryover
FROM (
    SELECT l.statement_id, l.affiliate_id, l.month, l.for_month,
           (l.for_month + interval '1 month' - interval '1 day')::date AS last_day,
           sum(l.amount) AS change
    FROM commission_statement_lines l
    WHERE l.kind = 'rev_adjustment'
    GROUP BY l.statement_id, l.affiliate_id, l.month, l.for_month
) AS c"""

# commission_frozen as revision 0002 wrote it (same text, so a downgrade gives it back as it
# was), with {new} and {old} for the columns frozen since.
_FROZEN_FUNCTION = """
    CREATE OR REPLACE FUNCTION commission_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'commission_statement_lines' OR TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'closed statements are frozen (% on %)', TG_OP, TG_TABLE_NAME;
        END IF;
        IF (NEW.affiliate_id, NEW.month, NEW.plan_version_id, NEW.cpa_validated, NEW.cpa_rejected,
            NEW.cpa, NEW.rev, NEW.cpa_adjustments, NEW.rev_adjustments, NEW.carryover_in,
            NEW.rev_payable, NEW.carryover_out, NEW.held_in, NEW.payable, NEW.held_out,
            NEW.closed_at{new})
           IS DISTINCT FROM
           (OLD.affiliate_id, OLD.month, OLD.plan_version_id, OLD.cpa_validated, OLD.cpa_rejected,
            OLD.cpa, OLD.rev, OLD.cpa_adjustments, OLD.rev_adjustments, OLD.carryover_in,
            OLD.rev_payable, OLD.carryover_out, OLD.held_in, OLD.payable, OLD.held_out,
            OLD.closed_at{old}) THEN
            RAISE EXCEPTION 'closed statements are frozen: only the workflow status may change';
        END IF;
        RETURN NEW;
    END $$
    """

UPGRADE = [
    "ALTER TABLE commission_statements ADD COLUMN rev_settlements numeric(18,2) NOT NULL DEFAULT 0",
    """
    CREATE TABLE commission_rev_settlements (
        id                      bigserial     PRIMARY KEY,
        statement_id            bigint        NOT NULL REFERENCES commission_statements (id),
        affiliate_id            bigint        NOT NULL,
        month                   date          NOT NULL,
        for_month               date          NOT NULL CHECK (for_month <= month),
        negative_carryover      boolean       NOT NULL,
        carryover_in            numeric(18,2) NOT NULL,
        rev                     numeric(18,2) NOT NULL,
        rev_paid                numeric(18,2) NOT NULL,
        carryover_out           numeric(18,2) NOT NULL,
        previous_carryover_in   numeric(18,2) NOT NULL,
        previous_rev            numeric(18,2) NOT NULL,
        previously_paid         numeric(18,2) NOT NULL,
        previous_carryover_out  numeric(18,2) NOT NULL,
        amount                  numeric(18,2) NOT NULL,
        description             text          NOT NULL,
        UNIQUE (affiliate_id, for_month, month)
    )
    """,
    "CREATE INDEX commission_rev_settlements_statement ON commission_rev_settlements (statement_id, for_month)",
    # Statements closed before this revision, carryover-on corrections: the closing month's
    # own REV took them in.
    f"""
    INSERT INTO commission_rev_settlements
        (statement_id, affiliate_id, month, for_month, negative_carryover, carryover_in, rev, rev_paid,
         carryover_out, previous_carryover_in, previous_rev, previously_paid, previous_carryover_out,
         amount, description)
    SELECT s.id, s.affiliate_id, s.month, s.month, s.negative_carryover, s.carryover_in, s.rev + o.change,
           greatest(s.carryover_in + s.rev + o.change, 0), s.carryover_out,
           s.carryover_in, s.rev + o.change, greatest(s.carryover_in + s.rev + o.change, 0), s.carryover_out,
           0,
           format('%s as closed: its REV balance %s took in %s of corrections of months closed with '
                  'negative carryover on', to_char(s.month, 'YYYY-MM'),
                  (s.carryover_in + s.rev + o.change)::numeric(18,2), o.change::numeric(18,2))
    FROM commission_statements s
    JOIN (SELECT statement_id, sum(change) AS change FROM ({_CORRECTIONS}) AS x
          WHERE negative_carryover GROUP BY statement_id) AS o ON o.statement_id = s.id
    """,
    # Carryover-off corrections: the corrected month's REV before (every line of it stored
    # earlier) and after, and what that paid.
    f"""
    INSERT INTO commission_rev_settlements
        (statement_id, affiliate_id, month, for_month, negative_carryover, carryover_in, rev, rev_paid,
         carryover_out, previous_carryover_in, previous_rev, previously_paid, previous_carryover_out,
         amount, description)
    SELECT statement_id, affiliate_id, month, for_month, false, 0, rev_before + change,
           greatest(rev_before + change, 0), 0, 0, rev_before, greatest(rev_before, 0), 0,
           greatest(rev_before + change, 0) - greatest(rev_before, 0),
           format('%s settled again: REV balance %s -> %s (carried in 0.00, REV %s), negative carryover '
                  'off: paid %s, now %s, pays %s; carries 0.00 (was 0.00)',
                  to_char(for_month, 'YYYY-MM'), rev_before, rev_before + change, rev_before + change,
                  greatest(rev_before, 0), greatest(rev_before + change, 0),
                  greatest(rev_before + change, 0) - greatest(rev_before, 0))
    FROM (
        SELECT x.*, coalesce((SELECT sum(l.amount) FROM commission_statement_lines l
                              WHERE l.affiliate_id = x.affiliate_id AND l.for_month = x.for_month
                                AND l.family = 'rev' AND l.month < x.month), 0)::numeric(18,2) AS rev_before
        FROM ({_CORRECTIONS}) AS x
        WHERE NOT x.negative_carryover
    ) AS y
    """,
    """
    UPDATE commission_statements s SET rev_settlements = r.amount
    FROM (SELECT statement_id, sum(amount) AS amount FROM commission_rev_settlements
          WHERE for_month < month GROUP BY statement_id) AS r
    WHERE r.statement_id = s.id AND r.amount <> 0
    """,
    # Frozen: a statement's new money column with the others; the rows like the lines (their
    # own function: commission_frozen compares a statement's columns).
    _FROZEN_FUNCTION.format(new=", NEW.rev_settlements", old=", OLD.rev_settlements"),
    """
    CREATE FUNCTION commission_frozen_rows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'closed statements are frozen (% on %)', TG_OP, TG_TABLE_NAME;
    END $$
    """,
    """CREATE TRIGGER commission_rev_settlements_frozen BEFORE UPDATE OR DELETE
       ON commission_rev_settlements FOR EACH ROW EXECUTE FUNCTION commission_frozen_rows()""",
]

DOWNGRADE = [
    "DROP TABLE IF EXISTS commission_rev_settlements",
    "DROP FUNCTION IF EXISTS commission_frozen_rows()",
    _FROZEN_FUNCTION.format(new="", old=""),
    "ALTER TABLE commission_statements DROP COLUMN IF EXISTS rev_settlements",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
