"""Who is asking and what they may see: the ``Viewer`` from a verified token, and
``DataAccess``, the one path every loader and resolver reads through, which asks the viewer
which affiliates the caller may see. Nothing else in the API decides visibility.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import bindparam, literal_column, or_, select, table
from sqlalchemy.engine import Row
from sqlalchemy.sql import ColumnElement, Executable

from db.reader import Reader, sql
from resolvers.privacy import mask_email, mask_name, mask_phone


class Role(StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    AFFILIATE = "affiliate"


# The affiliates whose upline (levels 1-5) holds :me: the downline an affiliate may read, each
# with its level under :me (the downline policy limits what it shows of its own network by it).
_DOWNLINE_MEMBERS = sql(
    "SELECT referred_id, mlm_level FROM affiliate_referrals "
    "WHERE referrer_id = :me AND referred_id = ANY(:ids)"
)

# The network levels an affiliate has (its own five); FULL is what the viewer sees of itself
# and what admins and analysts see of everyone.
FULL = 5
# An affiliate's own earnings: never shown to another affiliate (money is personal).
_AFFILIATE_MONEY = ("total_cpa_earned", "total_rev_earned", "rank_cpa")
# Totals over all five of an affiliate's own levels: for a downline they reach beyond the
# viewer's level 5 (its level L + 5), so they are hidden too.
_AFFILIATE_NETWORK_TOTALS = (
    "total_deposits", "total_withdrawals", "total_bets", "total_ggr", "total_network_size",
)
# Level-1 figures: hidden only when the downline is at the viewer's level 5 (depth 0).
_AFFILIATE_LEVEL_1 = ("total_referrals", "total_validated_referrals", "rank_referrals")


# Built once: a column built per request is a small reference cycle left to the collector.
_REFERRALS = table("affiliate_referrals")
_REFERRED_ID: ColumnElement[Any] = literal_column("referred_id")
_REFERRER_ID: ColumnElement[Any] = literal_column("referrer_id")


@dataclass(frozen=True)
class Viewer:
    """Who is asking, from a verified token; the policy of who sees what lives here.

    - admin: everything, and alone runs mutations;
    - analyst: everything, e-mail and phone masked;
    - affiliate: itself and its downline (levels 1-5); the downline are referred people, so
      their names are masked and their e-mail and phone hidden (LGPD). Anyone else (uplines
      included) is invisible exactly like an unknown id: null in GraphQL, 404 in REST.

    The downline policy (``DataAccess``): of a downline affiliate D at level L of the viewer,
    an affiliate sees D's own network levels 1..5-L only (what lies inside the viewer's five
    levels; L = 5: nothing of it) and never D's earnings (CPA, REV: null).
    """

    role: Role
    subject: str
    affiliate_id: int | None = None

    @property
    def sees_everyone(self) -> bool:
        return self.role is not Role.AFFILIATE

    @property
    def scope_key(self) -> str:
        """What the answers this viewer gets depend on (the response cache keys on it)."""
        return f"affiliate:{self.affiliate_id}" if self.role is Role.AFFILIATE else self.role.value

    def may_run_mutations(self) -> bool:
        return self.role is Role.ADMIN

    def may_introspect(self, affiliates_allowed: bool) -> bool:
        return self.role is not Role.AFFILIATE or affiliates_allowed

    def search_columns(self) -> tuple[str, ...]:
        """Columns the `search` filter may match: never a masked one (it would be an oracle)."""
        if self.role is Role.ADMIN:
            return ("name", "email")
        if self.role is Role.ANALYST:
            return ("name",)
        return ()

    def affiliate_predicate(self, column: ColumnElement[Any]) -> ColumnElement[bool] | None:
        """A SQL condition on an affiliate id column for list queries; None means all rows."""
        if self.sees_everyone:
            return None
        downline = (
            select(_REFERRED_ID)
            .select_from(_REFERRALS)
            .where(_REFERRER_ID == bindparam("scope_me", self.affiliate_id))
        )
        return or_(column == self.affiliate_id, column.in_(downline))

    def shown(self, row: Any) -> Any:
        """An affiliate row (``affiliate_id``, ``name``, ``email``, ``phone``) with its personal
        data as this viewer may see it."""
        if self.role is Role.ADMIN or row.affiliate_id == self.affiliate_id:
            return row
        name, email, phone = self.personal_data(row.affiliate_id, row.name, row.email, row.phone)
        return row._replace(name=name, email=email, phone=phone)

    def personal_data(
        self, affiliate_id: int, name: str, email: str | None, phone: str | None
    ) -> tuple[str, str | None, str | None]:
        """(name, email, phone) as this viewer may see them."""
        if self.role is Role.ADMIN or affiliate_id == self.affiliate_id:
            return name, email, phone
        if self.role is Role.ANALYST:
            return name, mask_email(email), mask_phone(phone)
        return mask_name(name), None, None


class DataAccess:
    """``Database`` seen through a ``Viewer``: what every loader and resolver calls.

    For an affiliate, membership of the downline is decided here with one batched query
    per loader batch, for the ids this request has not checked yet (its own id never costs one);
    the same query gives each member's level, from which the downline policy (``depth`` and
    the ``*_row`` masks below) decides what of that member's network and money it shows.
    """

    def __init__(self, database: Reader, viewer: Viewer) -> None:
        self.database = database
        self.viewer = viewer
        # affiliate id -> its level under the viewer (1..5), 0 when it is not in the downline.
        self._member: dict[int, int] = {}

    async def visible_ids(self, affiliate_ids: Iterable[int]) -> list[int]:
        """The subset of ``affiliate_ids`` this viewer may read, in order."""
        ids = list(affiliate_ids)
        viewer = self.viewer
        if viewer.sees_everyone:
            return ids
        me = viewer.affiliate_id
        unknown = list({i for i in ids if i != me and i not in self._member})
        if unknown:
            rows = await self.database.fetch(_DOWNLINE_MEMBERS, {"me": me, "ids": unknown})
            found = {r.referred_id: r.mlm_level for r in rows}
            for i in unknown:
                self._member[i] = found.get(i, 0)
        return [i for i in ids if i == me or self._member.get(i, 0) > 0]

    async def for_affiliates(
        self, query: Executable, affiliate_ids: Iterable[int], **params: Any
    ) -> Sequence[Row]:
        """Run a query keyed by ``:ids`` (affiliate ids), restricted to visible ones."""
        visible = await self.visible_ids(affiliate_ids)
        if not visible:
            return []
        return await self.database.fetch(query, {"ids": visible, **params})

    async def listing(self, query: Executable, **params: Any) -> Sequence[Row]:
        """Run a list query; the caller built it with ``scoped`` so the viewer's predicate applies."""
        return await self.database.fetch(query, params)

    def scoped(self, column: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        predicate = self.viewer.affiliate_predicate(column)
        return [] if predicate is None else [predicate]

    async def visible_rows(self, rows: Sequence[Row], attribute: str = "affiliate_id") -> list[Row]:
        """Rows fetched by another key (a validation id), kept only when their affiliate is visible."""
        visible = set(await self.visible_ids({getattr(r, attribute) for r in rows}))
        return [r for r in rows if getattr(r, attribute) in visible]

    async def global_state(self, query: Executable, **params: Any) -> Sequence[Row]:
        """Data about the system, not an affiliate (ETL runs)."""
        return await self.database.fetch(query, params)

    # The downline policy. Of a downline affiliate D at level L (1..5) of an affiliate viewer,
    # the viewer sees D's own network levels 1..depth with depth = 5 - L (those users are at
    # the viewer's levels L+1..5) and none of D's earnings. The viewer itself, admins and
    # analysts see everything (depth FULL). Every reader below applies it: the loaders, the
    # affiliate lists and the exports; the depth comes from the level ``visible_ids`` looked
    # up with the membership (no query of its own).

    def depth(self, affiliate_id: int) -> int:
        """How many of ``affiliate_id``'s own network levels this viewer may read (0..5).
        Only for an id ``visible_ids`` already answered (invisible ones: 0)."""
        if self.viewer.sees_everyone or affiliate_id == self.viewer.affiliate_id:
            return FULL
        level = self._member.get(affiliate_id, 0)
        return FULL - level if level > 0 else 0

    async def depths(self, affiliate_ids: Iterable[int]) -> dict[int, int]:
        """``depth`` of each visible id (invisible ids are left out); one batched query at
        most, for ids this request has not checked yet."""
        return {i: self.depth(i) for i in await self.visible_ids(affiliate_ids)}

    def affiliate_row(self, row: Any) -> Any:
        """An ``affiliates`` row without what its depth hides: its earnings and rank by them,
        its five-level totals, and (depth 0) its level-1 figures."""
        depth = self.depth(row.affiliate_id)
        if depth == FULL:
            return row
        hidden = _AFFILIATE_MONEY + _AFFILIATE_NETWORK_TOTALS + (_AFFILIATE_LEVEL_1 if depth == 0 else ())
        return row._replace(**dict.fromkeys(hidden))

    def network_row(self, row: Any) -> Any:
        """An ``affiliate_mlm_structure`` row: levels beyond the depth hidden (None), no level's
        CPA or REV, and the size of the levels shown only."""
        depth = self.depth(row.affiliate_id)
        if depth == FULL:
            return row
        m = row._mapping
        hidden: dict[str, Any] = {}
        for n in range(1, FULL + 1):
            hidden[f"level_{n}_cpa"] = hidden[f"level_{n}_rev"] = None
            if n > depth:
                for part in ("count", "deposits", "bets", "ggr"):
                    hidden[f"level_{n}_{part}"] = None
        size = sum(int(m[f"level_{n}_count"]) for n in range(1, depth + 1))
        return row._replace(total_network_size=size, **hidden)

    def referral_row(self, row: Any) -> Any:
        """An ``affiliate_referrals`` row of its referrer: ``cpa_amount`` is the referrer's money."""
        return row if self.depth(row.referrer_id) == FULL else row._replace(cpa_amount=None)

    def validation_row(self, row: Any) -> Any:
        """A ledger row: ``cpa_amount`` is its affiliate's money."""
        return row if self.depth(row.affiliate_id) == FULL else row._replace(cpa_amount=None)

    def summary_row(self, row: Any) -> Any:
        """A periodic summary: without the affiliate's earnings; the network totals over the
        levels shown only, and ``level_breakdown`` as the list of those levels (parsed)."""
        depth = self.depth(row.affiliate_id)
        if depth == FULL:
            return row
        raw = row.level_breakdown
        breakdown = orjson.loads(raw) if isinstance(raw, str | bytes) else (raw or {})
        levels: list[dict[str, Any]] = []
        totals = dict.fromkeys(("deposits", "bets", "ggr"), Decimal("0.00"))
        for n in range(1, depth + 1):
            part = breakdown.get(str(n)) or {}
            amounts = {k: Decimal(part.get(k) or "0.00") for k in totals}
            for k, amount in amounts.items():
                totals[k] += amount
            levels.append({"new_referrals": int(part.get("new_referrals", 0)), **amounts,
                           "cpa": None, "rev": None})
        return row._replace(
            cpa_earned=None, rev_earned=None, level_breakdown=levels,
            total_deposits=totals["deposits"], total_bets=totals["bets"], total_ggr=totals["ggr"],
        )
