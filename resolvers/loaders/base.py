"""What every loader shares: one query per batch (per distinct argument set), each on its
own pooled connection through ``DataAccess``; keyset pages fetched with one LATERAL join."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import TextClause
from sqlalchemy.engine import Row
from strawberry.dataloader import DataLoader

from db.reader import sql
from resolvers.viewer import FULL, DataAccess

K = TypeVar("K")
V = TypeVar("V")
A = TypeVar("A", bound="PageArgs")


class BatchLoader(DataLoader[K, V]):
    """A request-scoped DataLoader whose batch function reads through ``DataAccess``."""

    def __init__(self, access: DataAccess) -> None:
        super().__init__(load_fn=self.load_batch)
        self.access = access

    async def load_batch(self, keys: list[K]) -> Sequence[V]:  # pragma: no cover - abstract
        raise NotImplementedError

    # DataLoader keeps ``load_fn``; a stored bound method of the loader itself would make a
    # reference cycle, and a request's loaders (their cached rows and futures) would then wait
    # for the cyclic garbage collector instead of going when the request does.
    @property
    def load_fn(self) -> Callable[[list[K]], Awaitable[Sequence[V]]]:
        return self.load_batch

    @load_fn.setter
    def load_fn(self, value: Callable[[list[K]], Awaitable[Sequence[V]]]) -> None:
        pass  # always load_batch


__all__ = ["BatchLoader", "CountLoader", "PageLoader", "gather_groups", "sql"]


async def gather_groups(
    fetch: Callable[[Any, list[int]], Awaitable[None]], groups: dict[Any, list[int]]
) -> None:
    """One ``fetch`` per distinct argument set, concurrently; the usual single set is awaited
    directly (no task to create and schedule on the hot path)."""
    if len(groups) == 1:
        [(args, owners)] = groups.items()
        await fetch(args, owners)
    else:
        await asyncio.gather(*(fetch(args, owners) for args, owners in groups.items()))


def group_rows(rows: Sequence[Row], attribute: str) -> dict[int, list[Row]]:
    grouped: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[getattr(row, attribute)].append(row)
    return grouped


@dataclass(frozen=True)
class PageArgs:
    """The arguments of one connection field except the owner; subclasses add filters."""

    first: int
    after: tuple[Any, ...] | None

    def conditions(self) -> tuple[list[str], dict[str, Any]]:
        return [], {}


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    has_next_page: bool


class PageLoader(BatchLoader[tuple[int, A], Page], Generic[A]):
    """Pages of a child table for many owners at once: ``unnest(ids) CROSS JOIN LATERAL``
    (the ordered, limited keyset scan per owner); one query per distinct argument set."""

    table: str
    owner_column: str
    columns: str
    order_by: str
    keyset: str  # a condition over :after_0, :after_1, ... (the sort key of the cursor)
    level_column: str  # the owner's network level of a row (the downline policy limits it)
    owner_only: str = ""  # rows that are the owner's own money, shown only at full depth
    mask: str = ""  # the DataAccess method hiding what the viewer may not read of a row

    def query(self, args: A, limited: bool = False) -> tuple[TextClause, dict[str, Any]]:
        conditions, params = args.conditions()
        if args.after is not None:
            conditions.append(self.keyset)
            params.update({f"after_{i}": v for i, v in enumerate(args.after)})
        owners = "unnest(CAST(:ids AS bigint[])) AS k(id)"
        if limited:
            owners = "unnest(CAST(:ids AS bigint[]), CAST(:depths AS int[])) AS k(id, depth)"
            conditions += _limits(self.level_column, self.owner_only)
        where = "".join(f" AND {c}" for c in conditions)
        return sql(
            f"SELECT p.* FROM {owners} CROSS JOIN LATERAL ("
            f"SELECT {self.columns} FROM {self.table} WHERE {self.owner_column} = k.id{where} "
            f"ORDER BY {self.order_by} LIMIT :limit) p"
        ), params

    async def load_batch(self, keys: list[tuple[int, A]]) -> Sequence[Page]:
        groups: dict[A, list[int]] = defaultdict(list)
        for owner, args in keys:
            groups[args].append(owner)
        pages: dict[tuple[int, A], Page] = {}

        async def fetch(args: A, owners: list[int]) -> None:
            ids, depths = await _owner_depths(self.access, owners)
            query, params = self.query(args, depths is not None)
            rows = await self.access.for_affiliates(query, ids, limit=args.first + 1, depths=depths,
                                                    **params)
            if self.mask:
                mask = getattr(self.access, self.mask)
                rows = [mask(r) for r in rows]
            by_owner = group_rows(rows, self.owner_column)
            for owner in owners:
                found = by_owner.get(owner, [])
                pages[(owner, args)] = Page(found[: args.first], len(found) > args.first)

        await gather_groups(fetch, groups)
        return [pages[key] for key in keys]


class CountLoader(BatchLoader[tuple[int, A], int], Generic[A]):
    """``totalCount`` of a connection, loaded only when asked; one GROUP BY per filter set."""

    table: str
    owner_column: str
    level_column: str
    owner_only: str = ""

    async def load_batch(self, keys: list[tuple[int, A]]) -> Sequence[int]:
        groups: dict[A, list[int]] = defaultdict(list)
        for owner, args in keys:
            groups[args].append(owner)
        counts: dict[tuple[int, A], int] = {}

        async def fetch(args: A, owners: list[int]) -> None:
            conditions, params = args.conditions()
            ids, depths = await _owner_depths(self.access, owners)
            if depths is None:
                where = "".join(f" AND {c}" for c in conditions)
                query = sql(
                    f"SELECT {self.owner_column} AS owner, count(*) AS n FROM {self.table} "
                    f"WHERE {self.owner_column} = ANY(:ids){where} GROUP BY {self.owner_column}"
                )
            else:
                where = "".join(f" AND {c}" for c in conditions + _limits(self.level_column, self.owner_only))
                query = sql(
                    f"SELECT k.id AS owner, (SELECT count(*) FROM {self.table} "
                    f"WHERE {self.owner_column} = k.id{where}) AS n "
                    "FROM unnest(CAST(:ids AS bigint[]), CAST(:depths AS int[])) AS k(id, depth)"
                )
            rows = await self.access.for_affiliates(query, ids, depths=depths, **params)
            found = {r.owner: r.n for r in rows}
            for owner in owners:
                counts[(owner, args)] = found.get(owner, 0)

        await gather_groups(fetch, groups)
        return [counts[key] for key in keys]


def _limits(level_column: str, owner_only: str) -> list[str]:
    """The downline policy in SQL, for owners given with their depth (``k.depth``): rows of
    their levels 1..depth only, and none of their own money below full depth."""
    limits = [f"{level_column} <= k.depth"]
    if owner_only:
        limits.append(f"(k.depth = {FULL} OR NOT ({owner_only}))")
    return limits


async def _owner_depths(access: DataAccess, owners: list[int]) -> tuple[list[int], list[int] | None]:
    """The owners with anything to show and, when any of them is limited by the downline
    policy, their depths (None: all are read in full, the plain query applies)."""
    found = await access.depths(owners)
    ids = [o for o in owners if found.get(o, 0) > 0]
    if all(found[o] == FULL for o in ids):
        return ids, None
    return ids, [found[o] for o in ids]
