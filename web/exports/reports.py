"""The five reports of the Data service's exports (``GET /api/v1/exports/{report}``): what each
reads, its header, and how a row becomes cells.

Reports: ``statements`` (``month=YYYY-MM``, optional ``affiliate_id``, ``status``),
``ranking`` (``metric=cpa_earned|validated_referrals``), ``referrals`` (``affiliate_id``,
optional ``level``, ``status``), ``summaries`` (``affiliate_id``, ``period`` default
monthly, optional ``from``/``to`` bounding the period start, inclusive) and ``validations``
(optional ``affiliate_id``, ``level``, ``status``, ``from``/``to``: a date is a local day,
both ends inclusive; an instant bounds ``[from, to)``, read in the business time zone when
it has no offset).

Scoped exactly like GraphQL, through the same ``Viewer``/``DataAccess`` rules: an affiliate
token exports itself and its downline (anyone else's referrals, summaries or validations is
404, like REST), its own statements only (money is personal: ``may_read_money_of``), in the
ranking itself only, and its own validations when it names no affiliate; personal data is
masked by ``Viewer.personal_data``. The downline policy (``DataAccess.depth``): of a
level-L downline only its levels 1..5-L are listed, and its earnings (a referral's or a
validation's ``cpa_amount``, a summary's ``cpa_earned``/``rev_earned`` and level CPA/REV)
are empty cells, as they are null in GraphQL.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Numeric,
    Text,
    and_,
    cast,
    column,
    false,
    select,
    table,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from commissions import service as commissions
from db.tables import AFFILIATE_COLUMNS, affiliates
from resolvers.arguments import LEVELS, check_range
from resolvers.errors import BadUserInput, NotFound
from resolvers.statement import may_read_money_of
from resolvers.viewer import FULL
from schema.enums import CpaStatus, PeriodType, RankingMetric, ReferralStatus
from schema.statement import StatementStatus
from schema.summary import PeriodicSummary
from web.exports.csv_format import text_cell
from web.exports.params import (
    bound_param,
    check_known,
    date_param,
    enum_param,
    id_param,
    level_param,
    month_param,
)
from web.state import RequestContext

CHUNK = 5000  # rows per server-side fetch and per body chunk
REPORTS = ("statements", "ranking", "referrals", "summaries", "validations")

Chunks = AsyncIterator[Sequence[Sequence[Any]]]
Rows = Callable[[AsyncConnection], Chunks]


@dataclass
class Export:
    filename: str
    header: list[str]
    rows: Rows  # chunks of rows (cell values) read on the given connection


async def _visible_affiliate(ctx: RequestContext, affiliate_id: int) -> None:
    """404 unless the viewer may read this affiliate (the GraphQL ``affiliate`` is null)."""
    if await ctx.loaders.affiliate_by_id.load(affiliate_id) is None:
        raise NotFound(f"no affiliate with id {affiliate_id}")


def _streamed(query: Any, convert: Callable[[Any], Sequence[Any]]) -> Rows:
    """An export's row source: ``query`` in chunks, each row through ``convert``."""

    async def rows(conn: AsyncConnection) -> Chunks:
        result = await conn.stream(query.execution_options(yield_per=CHUNK))
        async for part in result.partitions(CHUNK):
            yield [convert(r) for r in part]

    return rows


_STATEMENT_COLUMNS = [
    "affiliate_id", "month", "status", "plan_id", "plan_version_id", "negative_carryover",
    "min_payout", "cpa_validated", "cpa_rejected", "cpa", "rev", "cpa_adjustments",
    "rev_adjustments", "rev_settlements", "carryover_in", "rev_payable", "carryover_out", "held_in",
    "payable", "held_out", "closed_at", "approved_at", "paid_at", "payment_reference",
]


def _statement_cells(s: commissions.StatementRecord) -> list[Any]:
    values = [getattr(s, name) for name in _STATEMENT_COLUMNS]
    values[2] = s.status.upper()  # the GraphQL enum's spelling
    values[3:5] = [str(s.plan_id), str(s.plan_version_id)]  # ids are text, as in GraphQL
    values[-1] = text_cell(s.payment_reference)
    return values


async def statements_export(ctx: RequestContext, q: Any) -> Export:
    check_known(q, ("month", "affiliate_id", "status"))
    month = month_param(q.get("month"))
    owner = id_param(q.get("affiliate_id"), "affiliate_id")
    status = enum_param(q.get("status"), "status", StatementStatus)
    viewer = ctx.viewer
    if owner is not None:
        if not may_read_money_of(viewer, owner):
            raise NotFound(f"no affiliate with id {owner}")
        await _visible_affiliate(ctx, owner)
    elif not viewer.sees_everyone:
        owner = viewer.affiliate_id
    tz = ctx.settings.timezone

    async def rows(conn: AsyncConnection) -> Chunks:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        found = commissions.month_statements(raw, tz, month, affiliate_id=owner,
                                             status=status.value if status is not None else None)
        chunk: list[list[Any]] = []
        async for s in found:
            chunk.append(_statement_cells(s))
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    suffix = f"{month:%Y-%m}" + (f"-{owner}" if owner is not None else "")
    return Export(f"statements-{suffix}.csv", list(_STATEMENT_COLUMNS), rows)


_AFFILIATE_COLUMNS = [c.strip() for c in AFFILIATE_COLUMNS.split(",")]


async def ranking_export(ctx: RequestContext, q: Any) -> Export:
    check_known(q, ("metric",))
    metric = enum_param(q.get("metric") or "cpa_earned", "metric", RankingMetric,
                        {"cpa_earned": "rank_cpa", "validated_referrals": "rank_referrals"})
    rank = affiliates.c[metric.value]
    ident = affiliates.c.affiliate_id
    viewer = ctx.viewer
    # An affiliate ranks itself only, as in GraphQL: its downline's order by a total would
    # reveal what the downline policy hides.
    mine = [] if viewer.sees_everyone else [ident == viewer.affiliate_id]
    query = (select(*affiliates.c).where(*ctx.access.scoped(ident), *mine, rank.is_not(None))
             .order_by(rank, ident))

    def convert(r: Any) -> list[Any]:
        values = list(r)
        name, email, phone = viewer.personal_data(r.affiliate_id, r.name, r.email, r.phone)
        values[1:4] = [text_cell(name), text_cell(email), text_cell(phone)]
        values[4] = r.status.upper()
        return values

    label = "cpa_earned" if metric is RankingMetric.CPA_EARNED else "validated_referrals"
    return Export(f"ranking-{label}.csv", list(_AFFILIATE_COLUMNS), _streamed(query, convert))


_REFERRAL_COLUMNS = [
    "referrer_id", "referred_id", "mlm_level", "referral_date", "status", "validation_date",
    "total_deposits", "total_bets", "cpa_amount",
]
_referrals = table("affiliate_referrals", *(column(c) for c in _REFERRAL_COLUMNS))


async def referrals_export(ctx: RequestContext, q: Any) -> Export:
    check_known(q, ("affiliate_id", "level", "status"))
    owner = id_param(q.get("affiliate_id"), "affiliate_id", required=True)
    level = level_param(q.get("level"))
    status = enum_param(q.get("status"), "status", ReferralStatus)
    assert owner is not None
    await _visible_affiliate(ctx, owner)
    t = _referrals.c
    conditions = [t.referrer_id == owner]
    depth = ctx.access.depth(owner)
    if depth < FULL:  # the downline policy: its levels 1..5-L, without its CPA
        conditions.append(t.mlm_level <= depth)
    if level is not None:
        conditions.append(t.mlm_level == level)
    if status is not None:
        conditions.append(t.status == status.value)
    # The GraphQL order (newest first), along the index (referrer_id, referral_date DESC, referred_id).
    query = select(*_referrals.c).where(and_(*conditions)).order_by(t.referral_date.desc(), t.referred_id)

    def convert(r: Any) -> list[Any]:
        values = list(r)
        values[4] = r.status.upper()
        if depth < FULL:
            values[-1] = None
        return values

    return Export(f"referrals-{owner}.csv", list(_REFERRAL_COLUMNS), _streamed(query, convert))


_SUMMARY_COLUMNS = [
    "affiliate_id", "period_type", "period_start", "new_referrals", "validated_referrals",
    "total_deposits", "total_bets", "total_ggr", "cpa_earned", "rev_earned",
]
_LEVEL_FIELDS = ("new_referrals", "deposits", "bets", "ggr", "cpa", "rev")
_summaries = table("affiliate_periodic_summaries", *(column(c) for c in _SUMMARY_COLUMNS),
                   column("level_breakdown"))
# A summary row as DataAccess masks it (a named tuple).
_SummaryRow = namedtuple(  # noqa: PYI024
    "_SummaryRow",
    ["affiliate_id", "period_type", "period_start", "new_referrals", "validated_referrals",
     "total_deposits", "total_bets", "total_ggr", "cpa_earned", "rev_earned", "level_breakdown"],
)


async def summaries_export(ctx: RequestContext, q: Any) -> Export:
    check_known(q, ("affiliate_id", "period", "from", "to"))
    owner = id_param(q.get("affiliate_id"), "affiliate_id", required=True)
    period = enum_param(q.get("period") or "monthly", "period", PeriodType)
    start, end = date_param(q.get("from"), "from"), date_param(q.get("to"), "to")
    check_range(start, end)
    assert owner is not None
    await _visible_affiliate(ctx, owner)
    t = _summaries.c
    conditions = [t.affiliate_id == owner, t.period_type == period.value]
    if ctx.access.depth(owner) == 0:  # a downline at the viewer's level 5: nothing to show
        conditions.append(false())
    if start is not None:
        conditions.append(t.period_start >= start)
    if end is not None:
        conditions.append(t.period_start <= end)
    query = select(*(t[c] for c in _SUMMARY_COLUMNS),
                   cast(t.level_breakdown, Text).label("level_breakdown")).where(
        and_(*conditions)).order_by(t.period_start)

    access = ctx.access

    def convert(r: Any) -> list[Any]:
        summary = PeriodicSummary.from_row(access.summary_row(_SummaryRow(*r)))
        values = [r.affiliate_id, summary.period_type, *(getattr(summary, c) for c in _SUMMARY_COLUMNS[2:])]
        levels = summary.levels()
        for level in levels:
            values.extend(getattr(level, f) for f in _LEVEL_FIELDS)
        values.extend([None] * (len(_LEVEL_FIELDS) * (len(LEVELS) - len(levels))))  # levels not shown
        return values

    header = [*_SUMMARY_COLUMNS, *(f"level_{n}_{f}" for n in LEVELS for f in _LEVEL_FIELDS)]
    return Export(f"summaries-{owner}-{period.value}.csv", header, _streamed(query, convert))


_VALIDATION_COLUMNS = [
    "id", "affiliate_id", "referred_user_id", "validation_date", "cpa_level", "cpa_amount",
    "cpa_status", "user_deposits", "user_bets", "days_active", "created_at",
]
_validations = table(
    "affiliate_cpa_validations",
    column("id", BigInteger), column("affiliate_id", BigInteger), column("referred_user_id", BigInteger),
    column("validation_date"), column("cpa_level", Integer), column("cpa_amount", Numeric(14, 2)),
    column("cpa_status", Text), column("user_deposits", Numeric(18, 2)), column("user_bets", Numeric(18, 2)),
    column("days_active", Integer), column("created_at"),
)


async def validations_export(ctx: RequestContext, q: Any) -> Export:
    check_known(q, ("affiliate_id", "level", "status", "from", "to"))
    owner = id_param(q.get("affiliate_id"), "affiliate_id")
    level = level_param(q.get("level"))
    status = enum_param(q.get("status"), "status", CpaStatus)
    zone = ctx.api.zone
    start, end = bound_param(q.get("from"), "from", zone, False), bound_param(q.get("to"), "to", zone, True)
    if start is not None and end is not None and start >= end:
        raise BadUserInput(f"from ({q.get('from')}) must be before to ({q.get('to')})")
    t = _validations.c
    conditions: list[Any] = []
    if owner is None and not ctx.viewer.sees_everyone:
        owner = ctx.viewer.affiliate_id  # an affiliate's ledger is its own (money is personal)
    depth = FULL
    if owner is not None:
        await _visible_affiliate(ctx, owner)
        conditions.append(t.affiliate_id == owner)
        depth = ctx.access.depth(owner)
        if depth < FULL:  # the downline policy: its levels 1..5-L, without amounts
            conditions.append(t.cpa_level <= depth)
    else:
        conditions.extend(ctx.access.scoped(t.affiliate_id))
    if level is not None:
        conditions.append(t.cpa_level == level)
    if status is not None:
        conditions.append(t.cpa_status == status.value)
    if start is not None:
        conditions.append(t.validation_date >= start)
    if end is not None:
        conditions.append(t.validation_date < end)
    # The GraphQL order (newest first), along the index (affiliate_id, validation_date, id).
    query = select(*_validations.c).where(*conditions).order_by(t.validation_date.desc(), t.id.desc())

    def convert(r: Any) -> list[Any]:
        values = list(r)
        values[6] = r.cpa_status.upper()
        if depth < FULL:
            values[5] = None
        return values

    filename = f"validations{f'-{owner}' if owner else ''}.csv"
    return Export(filename, list(_VALIDATION_COLUMNS), _streamed(query, convert))


BUILDERS: dict[str, Callable[[RequestContext, Any], Awaitable[Export]]] = {
    "statements": statements_export, "ranking": ranking_export, "referrals": referrals_export,
    "summaries": summaries_export, "validations": validations_export,
}
