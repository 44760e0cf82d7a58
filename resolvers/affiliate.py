"""Query.affiliate, Query.affiliates and Query.ranking."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy import and_, func, or_, select, tuple_
from strawberry.types import Info

from db.tables import affiliates
from resolvers.arguments import as_decimal, as_int, check_first, decode_cursor, encode_cursor, parse_id
from resolvers.context import Context
from resolvers.errors import BadUserInput, Forbidden
from resolvers.viewer import Viewer
from schema.affiliate import Affiliate, AffiliateFilter, AffiliateOrder
from schema.enums import AffiliateOrderField, OrderDirection, RankingMetric
from schema.pagination import Connection, connection

_INTEGER_FIELDS = {
    AffiliateOrderField.ID, AffiliateOrderField.TOTAL_REFERRALS,
    AffiliateOrderField.TOTAL_VALIDATED_REFERRALS, AffiliateOrderField.TOTAL_NETWORK_SIZE,
}
MAX_SEARCH = 200


async def affiliate(info: Info, id: strawberry.ID) -> Affiliate | None:
    """One affiliate; null when there is none with this id."""
    ctx: Context = info.context
    row = await ctx.loaders.affiliate_by_id.load(parse_id(id))
    return Affiliate.shown_to(ctx.viewer, row) if row is not None else None


async def me(info: Info) -> Affiliate | None:
    """The token's affiliate; null for admin and analyst tokens (they are not affiliates)."""
    ctx: Context = info.context
    if ctx.viewer.affiliate_id is None:
        return None
    row = await ctx.loaders.affiliate_by_id.load(ctx.viewer.affiliate_id)
    return Affiliate.shown_to(ctx.viewer, row) if row is not None else None


def _filters(filter: AffiliateFilter | None, viewer: Viewer) -> list[Any]:
    if filter is None:
        return []
    conditions: list[Any] = []
    if filter.status is not None:
        conditions.append(affiliates.c.status == filter.status.value)
    search = (filter.search or "").strip()
    if len(search) > MAX_SEARCH:
        raise BadUserInput(f"filter.search must be at most {MAX_SEARCH} characters")
    if search:
        columns = viewer.search_columns()
        if not columns:
            raise Forbidden("filter.search is not available to affiliate tokens")
        conditions.append(or_(*(affiliates.c[c].icontains(search, autoescape=True) for c in columns)))
    return conditions


async def _page(
    ctx: Context, *, sort: Any, descending: bool, tag: str, value_type: Any, first: int | None,
    after: str | None, conditions: list[Any], ties_ascending: bool = False,
) -> Connection[Affiliate]:
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
    statement = select(*affiliates.c).where(*keyset).order_by(*order).limit(size + 1)
    rows = list(await ctx.access.listing(statement))
    page, has_next = rows[:size], len(rows) > size
    ctx.loaders.affiliate_by_id.prime_many({r.affiliate_id: r for r in page})

    async def count() -> int:
        counted = await ctx.access.listing(select(func.count()).select_from(affiliates).where(*where))
        return int(counted[0][0])

    cursors = [
        encode_cursor(tag, r.affiliate_id) if single_key
        else encode_cursor(tag, r._mapping[sort.name], r.affiliate_id)
        for r in page
    ]
    nodes = [Affiliate.shown_to(ctx.viewer, r) for r in page]
    return connection(nodes, cursors, has_next, after, count)


async def affiliates_list(
    info: Info, first: int | None = 20, after: str | None = None,
    filter: AffiliateFilter | None = None, order_by: AffiliateOrder | None = None,
) -> Connection[Affiliate]:
    """Affiliates, filtered and ordered by any total (ties broken by id); by id by default."""
    field = order_by.field if order_by is not None else AffiliateOrderField.ID
    direction = order_by.direction if order_by is not None else OrderDirection.ASC
    return await _page(
        info.context,
        sort=affiliates.c[field.value],
        descending=direction is OrderDirection.DESC,
        tag=f"affiliates:{field.value}:{direction.value}",
        value_type=as_int if field in _INTEGER_FIELDS else as_decimal,
        first=first, after=after, conditions=_filters(filter, info.context.viewer),
    )


async def ranking(
    info: Info, metric: RankingMetric = RankingMetric.CPA_EARNED, first: int | None = 20,
    after: str | None = None,
) -> Connection[Affiliate]:
    """Active affiliates by their precomputed rank (1 first), ties by id.

    A rank is a function of the total alone (1 + the active affiliates above it), so the page
    walks the ranking index by total, highest first; each row's rank is looked up."""
    cpa = metric is RankingMetric.CPA_EARNED
    total = affiliates.c["total_cpa_earned" if cpa else "total_validated_referrals"]
    return await _page(
        info.context, sort=total, descending=True, ties_ascending=True,
        tag=f"ranking:{metric.value}", value_type=as_decimal if cpa else as_int,
        first=first, after=after, conditions=[affiliates.c.status == "active"],
    )
