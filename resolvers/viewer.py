"""Who is asking and what they may see: the ``Viewer`` from a verified token, and
``DataAccess``, the one path every loader and resolver reads through, which asks the viewer
which affiliates the caller may see. Nothing else in the API decides visibility.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, literal_column, or_, select, table
from sqlalchemy.engine import Row
from sqlalchemy.sql import ColumnElement, Executable

from db.reader import Database, sql
from resolvers.privacy import mask_email, mask_name, mask_phone


class Role(StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    AFFILIATE = "affiliate"


# The affiliates whose upline (levels 1-5) holds :me: the downline an affiliate may read.
_DOWNLINE_MEMBERS = sql(
    "SELECT referred_id FROM affiliate_referrals WHERE referrer_id = :me AND referred_id = ANY(:ids)"
)


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
    per loader batch, for the ids this request has not checked yet (its own id never costs one).
    """

    def __init__(self, database: Database, viewer: Viewer) -> None:
        self.database = database
        self.viewer = viewer
        self._member: dict[int, bool] = {}

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
            found = {r.referred_id for r in rows}
            for i in unknown:
                self._member[i] = i in found
        return [i for i in ids if i == me or self._member.get(i, False)]

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
