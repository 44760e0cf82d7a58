"""The configuration changes a cycle applies: the queue of migration 0008, consumed here.

A change of terms (criteria, plan version, plan assignment) is queued by a trigger in the
transaction that makes it. The cycle takes the queue in its own transaction, so each change is
applied exactly once: one committed before the cycle's DELETE is taken (and every later
statement of the cycle sees the change itself); one committed after it stays queued for the
next cycle; if the cycle fails, the DELETE rolls back with everything else.

Terms take effect from the start of a local day, tomorrow at the earliest, so a change rarely
reaches a day the ETL has already derived; when it does (a clock ahead of the source, a late
row), the later steps apply it: validation reconsiders the unvalidated users active on or
after a criteria change, accrual re-rates the REV of the days on or after a plan change.

Leaves ``config_changes(kind, effective_from, affiliate_id)``: the changes this cycle applies
(a full load consumes the queue too: it recomputes everything anyway).
"""

from __future__ import annotations

from etl.cycle import Cycle

# Anything queued: a cycle with nothing else to derive is not idle while a change waits.
ANY_QUEUED = "EXISTS (SELECT 1 FROM etl.config_changes)"

_CONSUME = """
CREATE TEMP TABLE config_changes ON COMMIT DROP AS
WITH taken AS (DELETE FROM etl.config_changes RETURNING kind, effective_from, affiliate_id)
SELECT kind, effective_from, affiliate_id FROM taken;
"""


async def run(cycle: Cycle) -> None:
    """The pipeline step: take the queued configuration changes."""
    await cycle.conn.execute(_CONSUME)
    cycle.result.config_changes = await cycle.conn.fetchval("SELECT count(*) FROM config_changes")
