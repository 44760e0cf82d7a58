"""The pipeline's declared hand-off tables (etl.pipeline) against its order, its SQL and a
real session.

a. static: in every mode, each table a step reads is created by an earlier step that ran;
b. the SQL of each step's module names only the temporary tables its step declares;
c. real cycles (a first load, an incremental one with changes, an idle one, a full one, an
   on-demand validation): after each step the session holds exactly the declared tables.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys

import pytest

from etl import extract, mirror, pipeline
from etl.cycle import Cycle
from etl.pipeline import IDLE_CHECK_READS, MODES, PIPELINE, Step, tables_after
from etl.sync import run_cycle
from tests.support.factories import Operation, fetch

ALL_CREATED = {t for step in PIPELINE for t in step.creates}
ALL_SCRATCH = {t for step in PIPELINE for t in step.scratch}
ALL_TEMP = ALL_CREATED | ALL_SCRATCH
STAGING = set(extract.STAGING_TABLES)


# ---------------------------------------------------------------------------- a. static


def test_step_names_are_unique_and_commit_is_last() -> None:
    names = [step.name for step in PIPELINE]
    assert len(names) == len(set(names))
    assert names[-1] == "commit" and pipeline.STEPS == tuple(names)


def test_every_table_has_one_creator() -> None:
    seen: dict[str, str] = {}
    for step in PIPELINE:
        for table in (*step.creates, *step.scratch):
            assert table not in seen, f"{table} is created by both {seen[table]} and {step.name}"
            seen[table] = step.name


@pytest.mark.parametrize("mode", MODES)
def test_every_read_table_is_created_by_an_earlier_step(mode: str) -> None:
    available: set[str] = set()
    idle_checked = mode == "full"  # a full load never asks whether it is idle
    for step in PIPELINE:
        if not idle_checked and not step.when_idle:
            # The idle check runs before the first step an idle cycle skips.
            missing = set(IDLE_CHECK_READS) - available
            assert not missing, f"the idle check ({mode}) reads {missing} before any step creates it"
            idle_checked = True
        if not step.runs_in(mode):
            continue
        missing = set(step.reads) - available
        assert not missing, f"{step.name} ({mode}) reads {sorted(missing)}, created by no earlier step"
        available |= set(step.creates)


def test_hand_offs_are_read_later_and_scratch_tables_are_not() -> None:
    for index, step in enumerate(PIPELINE):
        later = {t for s in PIPELINE[index + 1:] for t in s.reads} | set(IDLE_CHECK_READS)
        unread = set(step.creates) - later
        assert not unread, f"{step.name} hands off {unread} that no later step reads: scratch?"
        others = {t for s in PIPELINE if s is not step for t in s.reads}
        leaked = set(step.scratch) & others
        assert not leaked, f"{step.name}'s scratch tables {leaked} are read by another step"


# ---------------------------------------------------------------------------- b. the SQL


def _sql_text(module: object) -> str:
    """Every string literal of a module but its docstrings (the SQL and the names it builds)."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return "\n".join(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    )


def _named(text: str, tables: set[str]) -> set[str]:
    return {t for t in tables if re.search(rf"\b{re.escape(t)}\b", text)}


@pytest.mark.parametrize("step", PIPELINE, ids=lambda s: s.name)
def test_step_sql_names_only_its_declared_tables(step: Step) -> None:
    module = sys.modules[step.run.__module__]
    text = _sql_text(module)
    declared = set(step.creates) | set(step.reads) | set(step.scratch)
    undeclared = _named(text, ALL_TEMP) - declared
    assert not undeclared, f"{module.__name__} uses {sorted(undeclared)}, not declared by step {step.name}"
    # Staging tables are named by a template (staged_{table}); every other name is literal.
    unused = declared - STAGING - _named(text, declared)
    assert not unused, f"step {step.name} declares {sorted(unused)}, absent from {module.__name__}"


def test_idle_check_reads_what_it_declares() -> None:
    assert _named(mirror.ANYTHING_CHANGED, ALL_TEMP) == set(IDLE_CHECK_READS)


# ---------------------------------------------------------------------------- c. real cycles

_TEMP_TABLES = (
    "SELECT relname FROM pg_class "
    "WHERE relnamespace = pg_my_temp_schema() AND relkind IN ('r', 'p')"
)


class Checker:
    """The ``after_step`` hook: the session's temporary tables against the declaration."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, step: Step, cycle: Cycle, mode: str) -> None:
        present = {r[0] for r in await cycle.conn.fetch(_TEMP_TABLES)}
        must, may = tables_after(step.name, mode)
        missing, undeclared = must - present, present - must - may
        assert not missing, f"after {step.name} ({mode}): declared but missing {sorted(missing)}"
        assert not undeclared, f"after {step.name} ({mode}): undeclared {sorted(undeclared)}"
        self.seen.append((step.name, mode))

    def mode_after_mirror(self) -> str:
        return next(mode for name, mode in self.seen if name == "network")


async def _cycle(settings, robust_url: str, operation_url: str, **kw: object) -> tuple[object, Checker]:
    checker = Checker()
    result = await run_cycle(settings, robust_url, operation_url, after_step=checker, **kw)
    assert [name for name, _ in checker.seen] == list(pipeline.STEPS)
    return result, checker


async def test_declared_tables_are_the_session_tables(settings, robust_url, operation_url) -> None:
    op = await Operation.open(operation_url)
    try:
        for uid in range(1, 7):
            await op.user(uid, afiliado=uid == 1)
        for uid in range(2, 7):
            await op.track(uid, uid - 1, "2025-01-02 12:00Z")
        await op.deposit(3, "40.00", "2025-01-03 12:00Z")
        await op.bet(3, "60.00", "10.00", "2025-01-03 13:00Z")
        await op.bet(3, "50.00", "0.00", "2025-01-04 13:00Z")
        result, checker = await _cycle(settings, robust_url, operation_url)
        assert result.mode == "full" and checker.mode_after_mirror() == "full"  # the first load

        # Changes of every kind: a new user and edge, a move, money, a status change, bets.
        await op.user(7, at="2025-01-05 10:00Z")
        await op.track(7, 2, "2025-01-05 10:00Z")
        await op.move(5, 1, "2025-01-05 10:30Z")
        withdrawal = await op.withdrawal(4, "15.00", "2025-01-05 11:00Z")
        await op.deposit(4, "30.00", "2025-01-05 11:00Z")
        await op.set_status("saque", withdrawal, "cancelado", "2025-01-05 11:30Z")
        await op.bet(4, "70.00", "5.00", "2025-01-05 12:00Z")
        await op.bet(7, "5.00", "0.00", "2025-01-05 12:30Z")
        result, checker = await _cycle(settings, robust_url, operation_url)
        assert result.mode == "incremental" and checker.mode_after_mirror() == "incremental"
        assert result.users_moved > 0 and result.rows_written

        result, checker = await _cycle(settings, robust_url, operation_url)
        assert checker.mode_after_mirror() == "idle" and result.rows_written == {}

        result, checker = await _cycle(settings, robust_url, operation_url, full=True)
        assert checker.mode_after_mirror() == "full"

        result, checker = await _cycle(settings, robust_url, operation_url, validate_network_of=1)
        assert result.mode == "validate" and checker.mode_after_mirror() == "incremental"
    finally:
        await op.close()
    statuses = {r[0] for r in await fetch(robust_url, "SELECT status FROM etl.runs")}
    assert statuses == {"success"}
