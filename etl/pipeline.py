"""The ETL pipeline: its steps in order, and the temporary tables they hand each other.

Every step is an ``async def run(cycle)`` of its module (etl.cycle.Cycle). The steps of one
cycle run in one transaction of the robust database and pass data on in temporary tables
(``ON COMMIT DROP``) that no import shows; this list declares them, per step:

- ``creates``: the hand-off tables the step leaves for later steps (in every mode it runs in);
- ``reads``: the hand-off tables of earlier steps it reads;
- ``scratch``: tables the step makes for itself (some only in one mode); no other step reads
  them.

tests/etl/test_pipeline.py checks that every table is created before a step reads it, and,
on real cycles, that the tables the session holds after each step are exactly the declared
ones. Adding a step is adding one entry here (sync.py runs the list).

Modes: a ``full`` load, an ``incremental`` cycle, and an ``idle`` one, an incremental cycle
whose mirror step found nothing to derive: it runs only the steps marked ``when_idle``; the
others are still reported (progress, timing, the ``fail_after`` hook) but do nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from etl import (
    accrual,
    activity,
    config_changes,
    extract,
    mirror,
    network,
    publish,
    transactions,
    validation,
)
from etl.cycle import Cycle, commit

MODES = ("full", "incremental", "idle")


@dataclass(frozen=True)
class Step:
    """One pipeline step and the temporary tables it creates and reads."""

    name: str
    run: Callable[[Cycle], Awaitable[None]]
    creates: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    scratch: tuple[str, ...] = ()
    when_idle: bool = False  # also runs on an idle cycle (nothing to derive)

    def runs_in(self, mode: str) -> bool:
        """Whether the step does its work in ``mode`` (one of MODES)."""
        return mode != "idle" or self.when_idle


PIPELINE: tuple[Step, ...] = (
    Step(
        "extract",
        extract.run,
        creates=extract.STAGING_TABLES,
        when_idle=True,
    ),
    Step(
        "mirror",
        mirror.run,
        reads=extract.STAGING_TABLES,
        creates=(
            "changed_edge_users",
            "changed_user_days",
            "changed_profiles",
            "changed_money_rows",
            "changed_money_days",
            "new_bet_days",
        ),
        when_idle=True,
    ),
    Step(
        "network",
        network.run,
        reads=("changed_edge_users",),
        creates=("edges_before", "upline_before", "moved_users", "referral_dates_before"),
        scratch=("upline_candidates", "upline_after"),
    ),
    Step(
        "activity",
        activity.run,
        reads=("moved_users", "changed_user_days", "changed_money_days", "new_bet_days"),
        creates=("user_days_before", "user_days_after"),
    ),
    Step(
        "config",
        config_changes.run,
        creates=("config_changes",),
    ),
    Step(
        "validation",
        validation.run,
        reads=("changed_user_days", "moved_users", "config_changes"),
        creates=("plan_version_ranges", "affiliate_plan_ranges", "new_ledger_rows"),
        scratch=("cpa_candidates", "qualified_users"),
    ),
    Step(
        "accrual",
        accrual.run,
        reads=(
            "user_days_after",
            "user_days_before",
            "upline_before",
            "moved_users",
            "referral_dates_before",
            "new_ledger_rows",
            "plan_version_ranges",
            "affiliate_plan_ranges",
            "config_changes",
        ),
        creates=("period_deltas",),
        scratch=("daily_deltas", "daily_rows_after"),
    ),
    Step(
        "publish",
        publish.run,
        reads=(
            "period_deltas",
            "changed_profiles",
            "edges_before",
            "changed_edge_users",
            "new_ledger_rows",
            "moved_users",
            "user_days_after",
            "user_days_before",
        ),
        scratch=(
            "touched_periods",
            "touched_affiliates",
            "affiliates_to_publish",
            "former_affiliates",
            "ranked_before",
            "rank_changes",
            "current_ranks",
            "referrals_to_rebuild",
        ),
    ),
    Step(
        "transactions",
        transactions.run,
        reads=(
            "moved_users",
            "changed_money_rows",
            "changed_user_days",
            "user_days_after",
            "period_deltas",
            "new_ledger_rows",
        ),
    ),
    Step("commit", commit, when_idle=True),
)

# The step names, in order (progress, step timings and the ``fail_after`` hook use them).
STEPS: tuple[str, ...] = tuple(step.name for step in PIPELINE)

# What the idle check reads (mirror.ANYTHING_CHANGED): a when_idle step must create them.
IDLE_CHECK_READS = ("changed_edge_users", "changed_user_days", "changed_profiles", "changed_money_rows")

# Anything a cycle has to derive: a change set of the mirror step, or a queued change of terms
# (which may reach days already derived).
_ANYTHING_TO_DERIVE = f"SELECT ({mirror.ANYTHING_CHANGED}) OR {config_changes.ANY_QUEUED}"


async def is_idle(cycle: Cycle) -> bool:
    """Whether this is an idle cycle: incremental, not on demand, and nothing new or changed
    since the last one (the overlap re-read only rows already mirrored), so every derived
    table is already right."""
    if cycle.full or cycle.validate_network_of is not None:
        return False
    return not await cycle.conn.fetchval(_ANYTHING_TO_DERIVE)


def mode_of(cycle: Cycle, idle: bool) -> str:
    """The pipeline mode (one of MODES) of a cycle."""
    return "idle" if idle else ("full" if cycle.full else "incremental")


def tables_after(step_name: str, mode: str) -> tuple[set[str], set[str]]:
    """(the hand-off tables that must exist, the scratch tables that may) once ``step_name``
    has run in ``mode``: what the steps so far declared."""
    created: set[str] = set()
    scratch: set[str] = set()
    for step in PIPELINE:
        if step.runs_in(mode):
            created.update(step.creates)
            scratch.update(step.scratch)
        if step.name == step_name:
            return created, scratch
    raise KeyError(step_name)
