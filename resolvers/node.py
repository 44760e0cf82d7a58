"""Relay's ``Node``: ``Query.node``/``Query.nodes`` (the global ids are ``global_ids``').

Who sees a node is decided exactly as on the type's own root field: an id out of the viewer's
scope answers null like an unknown one (``affiliate(id:)`` does the same), and an id of a type
the token may not read at all raises the error that type's root field raises. Every lookup is
batched: one ``NodeLoader`` per request groups the keys of one tick (several ``node`` fields or
one ``nodes``) by type, and reads each type once.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from strawberry.dataloader import DataLoader

from commissions import service
from etl.runs import RUN_COLUMNS
from resolvers.context import Context
from resolvers.errors import BadUserInput, Forbidden
from resolvers.global_ids import KEY_PARTS, NodeKey, parse_global_id, transaction_key
from resolvers.loaders.base import sql
from resolvers.statement import may_read_money_of, robust_connection
from resolvers.viewer import FULL

MAX_IDS = 100  # ids one ``nodes`` may ask for
AUDIT_REFUSAL = "Only admin tokens may run mutations"  # what commissionAuditLog answers

# ------------------------------------------------------------------ lookups, one per type
_REFERRALS = sql(
    "SELECT r.referrer_id, r.referred_id, r.mlm_level, r.referral_date, r.status, r.validation_date, "
    "r.total_deposits, r.total_bets, r.cpa_amount FROM affiliate_referrals r "
    "JOIN unnest(CAST(:referrers AS bigint[]), CAST(:users AS bigint[])) AS k(referrer, referred) "
    "ON r.referrer_id = k.referrer AND r.referred_id = k.referred"
)
_TRANSACTIONS = sql(
    "SELECT t.id, t.affiliate_id, t.user_id, t.mlm_level, t.transaction_type, t.amount, "
    "t.transaction_date, t.source_id FROM affiliate_financial_transactions t "
    "JOIN unnest(CAST(:owners AS bigint[]), CAST(:instants AS timestamptz[]), CAST(:types AS text[]), "
    "CAST(:levels AS int[]), CAST(:users AS bigint[]), CAST(:sources AS bigint[])) "
    "AS k(owner, instant, type, level, user_id, source_id) "
    "ON t.affiliate_id = k.owner AND t.transaction_date = k.instant AND t.transaction_type = k.type "
    "AND t.mlm_level = k.level AND t.user_id IS NOT DISTINCT FROM k.user_id "
    "AND t.source_id IS NOT DISTINCT FROM k.source_id"
)
_AUDIT = sql(
    "SELECT id, at, actor, action, entity, entity_id, before::text AS before, after::text AS after "
    "FROM commission_audit_log WHERE id = ANY(:ids)"
)
_RUNS = sql(f"SELECT {RUN_COLUMNS} FROM etl.runs WHERE id = ANY(:ids)")
_VERSION_PLANS = "SELECT id, plan_id FROM commission_plan_versions WHERE id = ANY($1::bigint[])"
_OWNER_ONLY = ("cpa", "rev")  # transaction types that are the affiliate's own money


async def _affiliates(ctx: Context, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    rows = await ctx.loaders.affiliate_by_id.load_many([k[0] for k in keys])
    return {(r.affiliate_id,): ctx.viewer.shown(r) for r in rows if r is not None}


async def _validations(ctx: Context, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    rows = await ctx.loaders.cpa_validation_by_id.load_many([k[0] for k in keys])
    # The downline policy: of a level-L downline, its levels 1..5-L only.
    return {(r.id,): r for r in rows if r is not None and r.cpa_level <= ctx.access.depth(r.affiliate_id)}


async def _referrals(ctx: Context, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    visible = set(await ctx.access.visible_ids({k[0] for k in keys}))
    wanted = [k for k in keys if k[0] in visible]
    if not wanted:
        return {}
    rows = await ctx.access.database.fetch(
        _REFERRALS, {"referrers": [k[0] for k in wanted], "users": [k[1] for k in wanted]})
    access = ctx.access
    return {(r.referrer_id, r.referred_id): access.referral_row(r) for r in rows
            if r.mlm_level <= access.depth(r.referrer_id)}


async def _transactions(ctx: Context, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    visible = set(await ctx.access.visible_ids({k[0] for k in keys}))
    wanted = [k for k in keys if k[0] in visible]
    if not wanted:
        return {}
    columns = ("owners", "instants", "types", "levels", "users", "sources")
    params = {name: [k[i] for k in wanted] for i, name in enumerate(columns)}
    rows = await ctx.access.database.fetch(_TRANSACTIONS, params)
    access = ctx.access
    found: dict[tuple[Any, ...], Any] = {}
    for r in rows:
        depth = access.depth(r.affiliate_id)
        if r.mlm_level <= depth and (depth == FULL or r.transaction_type not in _OWNER_ONLY):
            found.setdefault(transaction_key(r), r)
    return found


async def _statements(ctx: Context, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    wanted = [k for k in keys if may_read_money_of(ctx.viewer, k[0])]
    if not wanted:
        return {}
    found: dict[tuple[Any, ...], Any] = {}
    async with robust_connection(ctx) as conn:
        for owner, month in wanted:  # a statement is settled one affiliate at a time
            record = await service.statement(conn, ctx.settings.timezone, owner, month)
            if record is not None:
                found[(owner, month)] = record
    return found


async def _plans(ctx: Context, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    tz = ctx.settings.timezone
    async with robust_connection(ctx) as conn:
        ids = [k[0] for k in keys]
        if not ctx.viewer.sees_everyone:  # an affiliate: the plan it is on today only
            current = await service.current_plan_id(conn, tz, ctx.viewer.affiliate_id or 0)
            ids = [i for i in ids if i == current]
        plans = await service.plans(conn, tz, ids) if ids else []
    return {(p.id,): p for p in plans}


async def _plan_versions(ctx: Context, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    async with robust_connection(ctx) as conn:
        pairs = await conn.fetch(_VERSION_PLANS, [k[0] for k in keys])
    plans = await _plans(ctx, sorted({(p["plan_id"],) for p in pairs}))
    return {(v.id,): v for plan in plans.values() for v in plan.versions if (v.id,) in set(keys)}


async def _criteria(ctx: Context, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    async with robust_connection(ctx) as conn:
        rows = await service.criteria_versions(conn)
    return {(r["id"],): r for r in rows if (r["id"],) in set(keys)}


async def _audit_entries(ctx: Context, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    if not ctx.viewer.may_run_mutations():  # commissionAuditLog is for admin tokens only
        raise Forbidden(AUDIT_REFUSAL)
    rows = await ctx.access.global_state(_AUDIT, ids=[k[0] for k in keys])
    return {
        (r.id,): service.LogEntry(
            id=r.id, at=r.at, actor=r.actor, action=r.action, entity=r.entity, entity_id=r.entity_id,
            before=orjson.loads(r.before) if r.before else None,
            after=orjson.loads(r.after) if r.after else None,
        )
        for r in rows
    }


async def _sync_runs(ctx: Context, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    rows = await ctx.access.global_state(_RUNS, ids=[k[0] for k in keys])
    return {(r.id,): r for r in rows}


_LOOKUPS = {
    "Affiliate": _affiliates,
    "Referral": _referrals,
    "CpaValidation": _validations,
    "Transaction": _transactions,
    "Statement": _statements,
    "CommissionPlan": _plans,
    "CommissionPlanVersion": _plan_versions,
    "QualificationCriteria": _criteria,
    "AuditEntry": _audit_entries,
    "SyncRun": _sync_runs,
}
assert set(_LOOKUPS) == set(KEY_PARTS)


class NodeLoader(DataLoader[NodeKey, Any]):
    """Nodes by decoded global id: each type's keys of one batch read at once (an id of a
    type the token may not read gets that type's refusal)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(load_fn=self.load_batch)
        # Weak: the context holds its loaders, and a cycle would outlive the request.
        self._ctx = weakref.ref(ctx)

    @property
    def ctx(self) -> Context:
        ctx = self._ctx()
        assert ctx is not None  # a loader is used only while its request runs
        return ctx

    # As ``BatchLoader``: no stored bound method of the loader itself (a reference cycle).
    @property
    def load_fn(self) -> Callable[[list[NodeKey]], Awaitable[Sequence[Any]]]:
        return self.load_batch

    @load_fn.setter
    def load_fn(self, value: Callable[[list[NodeKey]], Awaitable[Sequence[Any]]]) -> None:
        pass  # always load_batch

    async def load_batch(self, keys: list[NodeKey]) -> Sequence[Any]:
        by_type: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for k in keys:
            by_type[k.type_name].append(k.key)
        found: dict[str, dict[tuple[Any, ...], Any]] = {}
        errors: dict[str, Exception] = {}
        for type_name, type_keys in by_type.items():
            try:
                found[type_name] = await _LOOKUPS[type_name](self.ctx, list(dict.fromkeys(type_keys)))
            except Forbidden as exc:  # that type's refusal, only for its own ids
                errors[type_name] = exc
        return [errors.get(k.type_name) or found[k.type_name].get(k.key) for k in keys]


def _loader(ctx: Context) -> NodeLoader:
    return ctx.loaders.extra("node", lambda: NodeLoader(ctx))


async def node(ctx: Context, id: object) -> tuple[str, Any] | None:
    """The object behind a global id as ``(type name, row or record)``; None when there is
    none or the viewer may not see it."""
    key = parse_global_id(id)
    found = await _loader(ctx).load(key)
    return (key.type_name, found) if found is not None else None


async def nodes(ctx: Context, ids: Sequence[object]) -> list[tuple[str, Any] | None]:
    """``node`` of each id, in order (at most ``MAX_IDS``)."""
    if len(ids) > MAX_IDS:
        raise BadUserInput(f"ids may hold at most {MAX_IDS} ids, got {len(ids)}")
    keys = [parse_global_id(i, f"ids[{n}]") for n, i in enumerate(ids)]
    found = await _loader(ctx).load_many(keys)
    refused = next((f for f in found if isinstance(f, Forbidden)), None)
    if refused is not None:
        raise refused
    return [(k.type_name, f) if f is not None else None for k, f in zip(keys, found, strict=True)]
