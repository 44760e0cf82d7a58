"""CPU time of process trees, read from /proc (Linux), for the benches' CPU-per-request figures.

A tree's CPU is the sum, over the root and every live descendant, of utime + stime +
cutime + cstime (/proc/<pid>/stat fields 14-17). The children's fields matter: a process
that exits is reaped by its parent, and its whole CPU time moves into the parent's
cutime/cstime. So for PostgreSQL's tree (the postmaster and its children) a backend that
ends between two snapshots is still counted, and one born between them is counted from its
birth. Two snapshots taken around a measuring window give the CPU spent in it.

A PostgreSQL cluster is found by asking one of its backends for ``pg_backend_pid()``: its
parent is the postmaster. The cluster's tree includes every database's backends, its
background processes (checkpointer, walwriter, autovacuum) and the work of any other client
of the cluster during the window: the figure is the cluster's, so it is only clean on an
otherwise quiet cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime + cutime + cstime in ticks) of ``pid``, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: the fields follow the last ')'.
    fields = raw[raw.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14-17.
    return int(fields[1]), sum(int(v) for v in fields[11:15])


def tree_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named tree (root pid and its live descendants, reaped
    children included through the cutime/cstime of their parents)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            parents[int(entry.name)], ticks[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    result: dict[str, float] = {}
    for name, root in roots.items():
        total, pending = 0, [root]
        while pending:
            pid = pending.pop()
            total += ticks.get(pid, 0)
            pending += children.get(pid, [])
        result[name] = total / TICKS
    return result


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds spent by each tree between two ``tree_seconds`` snapshots."""
    return {name: after[name] - before.get(name, 0.0) for name in after}


async def postmaster_pid(url: str) -> int:
    """The pid of the postmaster of the cluster at ``url`` (the parent of a backend), checked
    to be a local process named postgres."""
    conn = await asyncpg.connect(url)
    try:  # read while the backend lives
        return parent_postmaster(int(await conn.fetchval("SELECT pg_backend_pid()")))
    finally:
        await conn.close()


def parent_postmaster(backend: int) -> int:
    """The postmaster of a local PostgreSQL backend (its parent, checked to be postgres)."""
    stat = _stat(backend)
    if stat is None:
        raise RuntimeError(f"backend {backend} is not a local process: PostgreSQL's CPU cannot be read")
    comm = Path(f"/proc/{stat[0]}/comm").read_text().strip()
    if not comm.startswith("postgres"):
        raise RuntimeError(f"the parent of backend {backend} is {comm!r}, not the postmaster")
    return stat[0]
