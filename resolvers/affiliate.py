"""Query.affiliate, Query.me, Query.affiliates, Query.ranking and Affiliate.upline: affiliate
rows with their personal data as the viewer may see it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, or_, select, tuple_

from db.tables import affiliates
from resolvers.arguments import as_decimal, as_int, check_first, decode_cursor, encode_cursor
from resolvers.context import Context
from resolvers.errors import BadUserInput, Forbidden
from resolvers.global_ids import parse_entity_id
from resolvers.pagination import Page
from resolvers.viewer import Viewer

# Columns an affiliate list may be ordered by, with the type of their cursor values.
_INTEGER_COLUMNS = {"affiliate_id", "total_referrals", "total_validated_referrals", "total_network_size"}
ORDER_COLUMNS = _INTEGER_COLUMNS | {
    "total_deposits", "total_withdrawals", "total_bets", "total_ggr", "total_cpa_earned", "total_rev_earned",
}
RANKING_TOTALS = {"rank_cpa": "total_cpa_earned", "rank_referrals": "total_validated_referrals"}
MAX_SEARCH = 200
# What an affiliate token may order affiliates by: every other column is hidden on some of its
# downline (earnings always, five-level totals always, level-1 counts at its level 5), and an
# order (or a cursor carrying the value) would reveal it.
AFFILIATE_ORDER_COLUMNS = {"affiliate_id"}


async def affiliate(ctx: Context, id: object) -> Any | None:
    """One affiliate row; None when there is none with this id or the viewer may not see it."""
    return await affiliate_by_id(ctx, parse_entity_id(id, "Affiliate"))


async def affiliate_by_id(ctx: Context, affiliate_id: int) -> Any | None:
    row = await ctx.loaders.affiliate_by_id.load(affiliate_id)
    return ctx.viewer.shown(row) if row is not None else None


async def me(ctx: Context) -> Any | None:
    """The token's affiliate; None for admin and analyst tokens (they are not affiliates)."""
    if ctx.viewer.affiliate_id is None:
        return None
    return await affiliate_by_id(ctx, ctx.viewer.affiliate_id)


async def upline_of(ctx: Context, affiliate_id: int) -> list[Any]:
    """p1..p5 of the affiliate, nearest first (those the viewer may see)."""
    ids = await ctx.loaders.upline_ids_by_affiliate_id.load(affiliate_id)
    rows = await ctx.loaders.affiliate_by_id.load_many(ids)
    return [ctx.viewer.shown(r) for r in rows if r is not None]


def _filters(status: str | None, search: str | None, viewer: Viewer) -> list[Any]:
    conditions: list[Any] = []
    if status is not None:
        conditions.append(affiliates.c.status == status)
    search = (search or "").strip()
    if len(search) > MAX_SEARCH:
        raise BadUserInput(f"filter.search must be at most {MAX_SEARCH} characters")
    if "\x00" in search:
        raise BadUserInput("filter.search must not contain NUL characters")
    if search:
        columns = viewer.search_columns()
        if not columns:
            raise Forbidden("filter.search is not available to affiliate tokens")
        conditions.append(or_(*(affiliates.c[c].icontains(search, autoescape=True) for c in columns)))
    return conditions


async def _page(
    ctx: Context, *, sort: Any, descending: bool, tag: str, value_type: Any, first: int | None,
    after: str | None, conditions: list[Any], ties_ascending: bool = False,
) -> Page[Any]:
    """One keyset page ordered by ``sort`` then id (id in the same direction, or ascending
    with ``ties_ascending``: the ranking's order, highest total first and ties by id)."""
    size = check_first(first, ctx.max_page_size)
    ident = affiliates.c.affiliate_id
    single_key = sort is ident
    key = decode_cursor(after, tag, (as_int,) if single_key else (value_type, as_int))
    where = [*ctx.access.scoped(ident), *conditions]
    keyset = list(where)
    if key is not None and ties_ascending and descending:
        value, last_id = key
        # sort <= value bounds the index range; the OR picks up after the last row.
        keyset += [sort <= value, or_(sort < value, and_(sort == value, ident > last_id))]
    elif key is not None:
        position = ident if single_key else tuple_(sort, ident)
        bound = key[0] if single_key else tuple_(*key)
        keyset.append(position < bound if descending else position > bound)
    order = [sort.desc(), ident.desc()] if descending else [sort.asc(), ident.asc()]
    if ties_ascending:
        order[1] = ident.asc()
    if single_key:
        order = order[:1]
    query = select(*affiliates.c).where(*keyset).order_by(*order).limit(size + 1)
    rows = list(await ctx.access.listing(query))
    page, has_next = rows[:size], len(rows) > size
    cursors = [
        encode_cursor(tag, r.affiliate_id) if single_key
        else encode_cursor(tag, r._mapping[sort.name], r.affiliate_id)
        for r in page
    ]
    # The downline policy (one batched level lookup for an affiliate token, none otherwise).
    await ctx.access.depths(r.affiliate_id for r in page)
    page = [ctx.access.affiliate_row(r) for r in page]
    ctx.loaders.affiliate_by_id.prime_many({r.affiliate_id: r for r in page})

    async def count() -> int:
        counted = await ctx.access.listing(select(func.count()).select_from(affiliates).where(*where))
        return int(counted[0][0])

    viewer = ctx.viewer
    return Page([viewer.shown(r) for r in page], cursors, has_next, after, count)


async def affiliates_list(
    ctx: Context, *, first: int | None = 20, after: str | None = None, status: str | None = None,
    search: str | None = None, order_column: str = "affiliate_id", descending: bool = False,
) -> Page[Any]:
    """Affiliates, filtered and ordered by any total (ties broken by id); by id by default.
    ``status`` is a stored value; ``order_column`` one of ``ORDER_COLUMNS``."""
    if order_column not in ORDER_COLUMNS:
        raise BadUserInput(f"affiliates cannot be ordered by {order_column!r}")
    if not ctx.viewer.sees_everyone and order_column not in AFFILIATE_ORDER_COLUMNS:
        raise Forbidden(
            "affiliate tokens may order affiliates by ID only: a downline affiliate's totals "
            "and earnings are hidden from them"
        )
    direction = "desc" if descending else "asc"
    return await _page(
        ctx,
        sort=affiliates.c[order_column],
        descending=descending,
        tag=f"affiliates:{order_column}:{direction}",
        value_type=as_int if order_column in _INTEGER_COLUMNS else as_decimal,
        first=first, after=after, conditions=_filters(status, search, ctx.viewer),
    )


async def ranking(
    ctx: Context, *, metric: str = "rank_cpa", first: int | None = 20, after: str | None = None,
) -> Page[Any]:
    """Active affiliates by their precomputed rank (1 first), ties by id; ``metric`` is
    ``rank_cpa`` or ``rank_referrals``.

    A rank is a function of the total alone (1 + the active affiliates above it), so the page
    walks the ranking index by total, highest first; each row's rank is looked up.

    An affiliate token's ranking holds itself only (with its rank among all active
    affiliates): the order of its downline by a total would reveal what the downline policy
    hides (earnings, totals beyond the viewer's level 5)."""
    if metric not in RANKING_TOTALS:
        raise BadUserInput(f"no ranking by {metric!r}")
    total = affiliates.c[RANKING_TOTALS[metric]]
    conditions = [affiliates.c.status == "active"]
    if not ctx.viewer.sees_everyone:
        conditions.append(affiliates.c.affiliate_id == ctx.viewer.affiliate_id)
    return await _page(
        ctx, sort=total, descending=True, ties_ascending=True,
        tag=f"ranking:{metric}", value_type=as_decimal if metric == "rank_cpa" else as_int,
        first=first, after=after, conditions=conditions,
    )
