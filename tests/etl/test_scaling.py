"""What keeps a cycle's cost with its batch rather than with the database (issue 17).

At three times the seed scale (`bench.etl_bench --scale seed3`) these grew with the database:
the incremental cycle's JIT compilation (PostgreSQL decides by the planner's cost, which
follows the tables' sizes), a full load's temporary tables and hash aggregates past the
default memory, and the ranks recounted over every affiliate (tests/etl/test_rules.py). These
tests pin the session settings each kind of cycle runs with, and that an incremental cycle
reads the source from its cursors.
"""

from __future__ import annotations

from etl.cycle import Cycle
from etl.pipeline import Step
from etl.sync import run_cycle
from tests.support.factories import Operation

SETTINGS = "SELECT current_setting('jit'), current_setting('work_mem'), current_setting('temp_buffers')"


async def _cycle_settings(settings, robust_url: str, operation_url: str) -> tuple[str, tuple[str, ...]]:
    """Run one cycle; return its mode and the settings its steps ran with (after extract)."""
    seen: list[tuple[str, ...]] = []

    async def after_step(step: Step, cycle: Cycle, mode: str) -> None:
        if step.name == "extract":
            seen.append(tuple(await cycle.conn.fetchrow(SETTINGS)))

    result = await run_cycle(settings, robust_url, operation_url, after_step=after_step)
    assert result.status == "success"
    return result.mode, seen[0]


async def test_a_full_load_has_room_and_an_incremental_cycle_compiles_nothing(
    op: Operation, settings, robust_url: str, operation_url: str
) -> None:
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.deposit(2, "30.00", "2025-01-02 12:00Z")
    server_jit = (await _server_settings(robust_url))[0]

    # The first load: every user in temporary tables and hash aggregates, JIT as configured.
    mode, (jit, work_mem, temp_buffers) = await _cycle_settings(settings, robust_url, operation_url)
    assert mode == "full"
    assert (jit, work_mem, temp_buffers) == (server_jit, "1GB", "1GB")

    # An incremental cycle: a batch through indexes, nothing compiled, the default memory.
    await op.deposit(2, "10.00", "2025-01-03 12:00Z")
    mode, (jit, work_mem, temp_buffers) = await _cycle_settings(settings, robust_url, operation_url)
    assert mode == "incremental"
    assert (jit, work_mem) == ("off", "256MB")
    assert temp_buffers == (await _server_settings(robust_url))[2]


async def test_an_incremental_cycle_reads_the_source_from_its_cursors(
    op: Operation, settings, robust_url: str, operation_url: str
) -> None:
    # Ten users who arrived, were referred, deposited and bet one a day (the last on 10 January).
    await op.user(1, afiliado=True)
    for user in range(2, 12):
        day = f"2025-01-{user - 1:02d}"
        await op.user(user, at=f"{day} 10:00Z")
        await op.track(user, 1, f"{day} 10:01Z")
        await op.deposit(user, "30.00", f"{day} 12:00Z")
        await op.bet(user, "5.00", "0.00", f"{day} 12:05Z")
    first = await run_cycle(settings, robust_url, operation_url)
    assert first.mode == "full" and first.rows_read["depositos"] == 10

    # A deposit a day later: the cycle reads it and the overlap window (the rows within ten
    # minutes of each cursor: the last user's), never the history before it.
    await op.deposit(2, "10.00", "2025-01-11 12:00Z")
    later = await run_cycle(settings, robust_url, operation_url)
    assert later.mode == "incremental"
    assert later.rows_read == {"cadastro": 1, "tracked": 1, "depositos": 2, "saque": 0, "casino_bets_v": 1}


async def _server_settings(robust_url: str) -> tuple[str, ...]:
    from tests.support.factories import fetch

    rows = await fetch(robust_url, SETTINGS)
    return tuple(rows[0])
