"""One statement for a whole answer of the compiled path (schema/compiled.py): the ETL run the
answer is as of, the sync status, one affiliate, its network row, its summaries and its
referral pages, each as a column of one row, read in one round trip.

The resolvers read the same data through their DataLoaders, one statement per loader batch,
inside an exported snapshot (db/snapshot.py). A single statement reads one snapshot by
itself, so this needs neither the transaction nor the export, and the run it reads is the
run its data holds. Every row comes back as the loaders return it: the same columns (the
same named-tuple class, ``db.reader.rows_of``), the same order, the same masks of the
downline policy (``DataAccess``) and of personal data (``Viewer.shown``). Only viewers that
read the affiliate in full take this path (staff, or an affiliate reading itself: the
compiled plan checks, ``reads_in_full``); a downline is the general path's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from db.reader import rows_of
from db.snapshot import SNAPSHOT_RUN, SnapshotReads
from db.tables import AFFILIATE_COLUMNS
from etl.runs import RUN_COLUMNS, SYNC_STATUS
from resolvers.arguments import as_datetime, as_int, check_first, check_level, check_range, decode_cursor
from resolvers.context import Context
from resolvers.errors import BadUserInput
from resolvers.global_ids import parse_entity_id
from resolvers.loaders.network import NETWORK_COLUMNS
from resolvers.loaders.referral import ReferralPageByAffiliateLoader
from resolvers.loaders.summary import SUMMARY_FIGURES
from resolvers.pagination import Page
from resolvers.referral import CURSOR_TAG, referral_cursor
from resolvers.summary import MAX_LAST
from resolvers.viewer import FULL

_SYNC_COLUMNS = ("kind", *RUN_COLUMNS.split(", "))
_AFFILIATE_COLUMNS = tuple(AFFILIATE_COLUMNS.split(", "))
_NETWORK_COLUMNS = tuple(NETWORK_COLUMNS.split(", "))
_SUMMARY_COLUMNS = (*SUMMARY_FIGURES.split(", "), "level_breakdown")
_REFERRALS = ReferralPageByAffiliateLoader
_REFERRAL_COLUMNS = tuple(_REFERRALS.columns.split(", "))


class NotCovered(Exception):
    """The request is one the compiled path does not answer (a downline's dashboard, a bad
    argument): the general path answers it, errors included."""


def target_of(ctx: Context, root: str, id_argument: object = None) -> int | None:
    """The affiliate a root field reads (``affiliate(id:)`` or ``me``), when this viewer reads
    it in full; None for ``me`` of a staff token. ``NotCovered`` otherwise."""
    viewer = ctx.viewer
    if root == "me":
        return viewer.affiliate_id
    try:
        affiliate_id = parse_entity_id(id_argument, "Affiliate")
    except BadUserInput as exc:
        raise NotCovered from exc
    if not reads_in_full(ctx, affiliate_id):
        raise NotCovered
    return affiliate_id


def reads_in_full(ctx: Context, affiliate_id: int) -> bool:
    """Staff read every affiliate in full; an affiliate itself (its downline: the general path)."""
    viewer = ctx.viewer
    return viewer.sees_everyone or affiliate_id == viewer.affiliate_id


@dataclass(frozen=True, slots=True)
class SummaryAsk:
    """One ``summaries`` field's arguments, checked as ``resolvers.summary.summaries_of`` does."""

    period: str
    start: date | None
    end: date | None
    last: int | None
    levels: bool = True  # the level breakdown is read (PeriodicSummary.levels is asked for)

    @classmethod
    def of(cls, period: str, start: date | None, end: date | None, last: int | None,
           levels: bool = True) -> SummaryAsk:
        try:
            check_range(start, end)
        except BadUserInput as exc:
            raise NotCovered from exc
        if last is not None and not 1 <= last <= MAX_LAST:
            raise NotCovered
        return cls(period, start, end, last, levels)

    @property
    def shape(self) -> tuple[bool, bool, bool, bool]:
        return (self.start is not None, self.end is not None, self.last is not None, self.levels)


@dataclass(frozen=True, slots=True)
class ReferralAsk:
    """One ``referrals`` field's arguments, checked as ``resolvers.referral.referrals_of`` does."""

    first: int
    after: tuple[Any, ...] | None
    after_text: str | None
    level: int | None
    status: str | None
    counted: bool  # totalCount is asked

    @classmethod
    def of(cls, ctx: Context, first: int | None, after: str | None, level: int | None, status: str | None,
           counted: bool) -> ReferralAsk:
        try:
            return cls(check_first(first, ctx.max_page_size),
                       decode_cursor(after, CURSOR_TAG, (as_datetime, as_int)), after, check_level(level),
                       status, counted)
        except BadUserInput as exc:
            raise NotCovered from exc

    @property
    def shape(self) -> tuple[bool, bool, bool, bool]:
        return (self.level is not None, self.status is not None, self.after is not None,
                self.counted and self.status is not None)


@dataclass(slots=True)
class Asks:
    """What one answer reads: filled by the compiled plan before the statement runs."""

    sync: bool = False
    affiliate: int | None = None  # the affiliate read in full (None: no affiliate field)
    network: bool = False
    summaries: list[SummaryAsk] = field(default_factory=list)
    referrals: list[ReferralAsk] = field(default_factory=list)

    def shape(self) -> tuple[Any, ...]:
        return (self.sync, self.affiliate is not None, self.network or any(r.counted for r in self.referrals),
                tuple(s.shape for s in self.summaries), tuple(r.shape for r in self.referrals))


@dataclass(slots=True)
class Fetched:
    """The rows of one answer, as the resolvers return them."""

    sync: list[Any]
    affiliate: Any | None
    network: Any | None
    summaries: list[list[Any]]
    referrals: list[Page[Any]]
    referral_counts: list[int]  # totalCount of each referrals page (0 where it is not asked)


# The statement of each shape (a few per registered document), built once.
_STATEMENTS: dict[tuple[Any, ...], str] = {}
MAX_STATEMENTS = 256


def statement(shape: tuple[Any, ...]) -> str:
    """The SQL of one shape of ``Asks``: $1 is the affiliate, then each ask's own values in order."""
    found = _STATEMENTS.get(shape)
    if found is not None:
        return found
    sync, affiliate, network, summaries, referrals = shape
    columns = ["r.id AS run_id", "r.source_as_of AS run_as_of"]
    n = 1  # $1: the affiliate

    def param() -> str:
        nonlocal n
        n += 1
        return f"${n}"

    if sync:
        columns.append(f"ARRAY(SELECT ROW(s.*) FROM ({SYNC_STATUS}) AS s) AS sync")
    if affiliate:
        columns.append(
            f"(SELECT ROW({AFFILIATE_COLUMNS}) FROM affiliates_ranked WHERE affiliate_id = $1) AS affiliate"
        )
    if network:
        columns.append(
            f"(SELECT ROW({NETWORK_COLUMNS}) FROM affiliate_mlm_structure WHERE affiliate_id = $1) AS network"
        )
    for i, (has_from, has_to, has_last, levels) in enumerate(summaries):
        where = f"affiliate_id = $1 AND period_type = {param()}"
        if has_from:
            where += f" AND period_start >= {param()}"
        if has_to:
            where += f" AND period_start <= {param()}"
        # As the loader: with `last`, the newest N (the breakdown's text made for those only),
        # oldest first; else every period, oldest first.
        inner = f"SELECT {SUMMARY_FIGURES}, level_breakdown FROM affiliate_periodic_summaries WHERE {where}"
        if has_last:
            inner += f" ORDER BY period_start DESC LIMIT {param()}"
        # The breakdown's text only when its levels are asked for: nothing else of a row read
        # in full uses it (the downline policy's mask would, and this path never applies it).
        breakdown = "level_breakdown::text" if levels else "NULL::text"
        columns.append(
            f"ARRAY(SELECT ROW({SUMMARY_FIGURES}, {breakdown}) FROM ({inner}) AS s "
            f"ORDER BY period_start) AS summaries_{i}"
        )
    for i, (has_level, has_status, has_after, counted) in enumerate(referrals):
        conditions = [f"{_REFERRALS.owner_column} = $1"]
        if has_level:
            conditions.append(f"{_REFERRALS.level_column} = {param()}")
        if has_status:
            conditions.append(f"status = {param()}")
        filters = " AND ".join(conditions)
        if counted:
            columns.append(f"(SELECT count(*) FROM {_REFERRALS.table} WHERE {filters}) AS referral_count_{i}")
        if has_after:
            first_key, second_key = param(), param()
            keyset = _REFERRALS.keyset.replace(":after_0", first_key).replace(":after_1", second_key)
            conditions.append(keyset)
        columns.append(
            f"ARRAY(SELECT ROW({_REFERRALS.columns}) FROM {_REFERRALS.table} "
            f"WHERE {' AND '.join(conditions)} "
            f"ORDER BY {_REFERRALS.order_by} LIMIT {param()}) AS referrals_{i}"
        )
    text = (
        f"SELECT {', '.join(columns)} FROM (SELECT 1) AS one "
        f"LEFT JOIN LATERAL ({SNAPSHOT_RUN}) AS r ON true"
    )
    if len(_STATEMENTS) >= MAX_STATEMENTS:
        _STATEMENTS.clear()
    _STATEMENTS[shape] = text
    return text


def arguments(asks: Asks) -> list[Any]:
    """The statement's values, in the order ``statement`` numbers them."""
    if asks.affiliate is None:
        return []  # no affiliate: nothing below it is read either
    values: list[Any] = [asks.affiliate]
    for s in asks.summaries:
        values.append(s.period)
        values += [v for v in (s.start, s.end, s.last) if v is not None]
    for r in asks.referrals:
        values += [v for v in (r.level, r.status) if v is not None]
        if r.after is not None:
            values += list(r.after)
        values.append(r.first + 1)
    return values


async def fetch(ctx: Context, asks: Asks) -> Fetched:
    """Everything ``asks`` names, in one statement on the answer's reads."""
    reads = ctx.database
    if not isinstance(reads, SnapshotReads):
        raise NotCovered  # not an answer of the edge (no snapshot reads to run it on)
    shape = asks.shape()
    row = await reads.fetch_alone(statement(shape), arguments(asks))
    access = ctx.access
    viewer = ctx.viewer
    # The masks of the downline policy, as the loaders apply them (identities at full depth,
    # the only depth this path reads: skipped then).
    full = asks.affiliate is None or access.depth(asks.affiliate) == FULL
    affiliate = network = None
    if shape[1] and row["affiliate"] is not None:
        [raw] = rows_of(_AFFILIATE_COLUMNS, [row["affiliate"]])
        affiliate = viewer.shown(raw if full else access.affiliate_row(raw))
    if shape[2] and row["network"] is not None:
        [raw] = rows_of(_NETWORK_COLUMNS, [row["network"]])
        network = raw if full else access.network_row(raw)
    summaries = [
        _masked(rows_of(_SUMMARY_COLUMNS, row[f"summaries_{i}"]), full, access.summary_row)
        for i in range(len(asks.summaries))
    ]
    referrals = []
    counts = []
    for i, ask in enumerate(asks.referrals):
        found = _masked(rows_of(_REFERRAL_COLUMNS, row[f"referrals_{i}"]), full, access.referral_row)
        rows = found[: ask.first]
        total = _count(ask, i, row, network)
        counts.append(total)
        cursors = [referral_cursor(r) for r in rows]
        referrals.append(Page(rows, cursors, len(found) > ask.first, ask.after_text, _counted(total)))
    sync = rows_of(_SYNC_COLUMNS, row["sync"]) if shape[0] else []
    return Fetched(sync, affiliate, network, summaries, referrals, counts)


def _masked(rows: list[Any], full: bool, mask: Callable[[Any], Any]) -> list[Any]:
    return rows if full else [mask(r) for r in rows]


def _count(ask: ReferralAsk, i: int, row: Any, network: Any | None) -> int:
    """totalCount as ``referrals_of`` counts it: from the network row's level sizes without a
    status filter, else the statement's COUNT (0 when it is not asked)."""
    if not ask.counted:
        return 0
    if ask.status is None:
        if network is None:
            return 0
        return int(network._mapping[f"level_{ask.level}_count" if ask.level else "total_network_size"] or 0)
    return int(row[f"referral_count_{i}"])


def _counted(total: int) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        return total

    return count

