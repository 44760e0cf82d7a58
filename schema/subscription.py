"""The Subscription root: live updates pushed over the graphql-transport-ws protocol on /graphql
(the WebSocket endpoint is web/subscriptions.py).

Both fields move with the data's generation: a committed ETL run, however it reached this
process (the in-process event, PostgreSQL NOTIFY, the poll of ``etl.runs``). A subscription
reads through the same resolvers and DataLoaders as the queries, with the viewer of the
connection's token, so what it pushes is exactly what the query answers at that moment: an
affiliate token subscribes only to what it could query, and a foreign or unknown id is
``null`` just as ``Query.affiliate`` says."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Protocol, cast

import strawberry
from strawberry.types import Info

from db.engine import DatabaseUnavailable, QueryTimeout
from resolvers import affiliate as affiliate_resolvers
from resolvers.context import Context
from schema.affiliate import Affiliate


@dataclass(frozen=True)
class DataCommit:
    """A committed ETL run: its id (``etl.runs.id``, increasing) and the source instant its
    data reflects."""

    run_id: int
    as_of: datetime | None


class LiveContext(Protocol):
    """What a subscription needs of its context besides the resolvers' ``Context`` (the web
    edge provides it: ``web.subscriptions.SubscriptionContext``)."""

    def commits(self) -> AbstractContextManager[AsyncIterator[DataCommit]]:
        """The commits from now on, in order (registered on entry: none is missed)."""
        ...

    def renew(self) -> None:
        """Fresh DataLoaders and data snapshot for the next push (loaders cache per read)."""
        ...


def _live(info: Info) -> tuple[LiveContext, Context]:
    return cast(LiveContext, info.context), cast(Context, info.context)


@strawberry.type(description="A committed ETL cycle: every query now reads newer data.")
class DataUpdate:
    run_id: strawberry.ID = strawberry.field(
        description="The committed ETL run (`etl.runs` id); it increases with every run.")
    data_as_of: datetime | None = strawberry.field(
        description="The source instant (ISO 8601 with offset) the data now reflects: the value "
                    "of `extensions.asOf` in query answers from now on; null before any source row "
                    "was read.")


AffiliateId = Annotated[strawberry.ID, strawberry.argument(
    description="The affiliate, as `Query.affiliate` takes it: an affiliate token may follow "
                "itself and its downline (levels 1-5) only; anyone else reads null.")]


async def _affiliate(live: LiveContext, context: Context, id: strawberry.ID) -> Affiliate | None:
    """``Query.affiliate(id)`` as the viewer would read it now (fresh loaders)."""
    live.renew()
    row = await affiliate_resolvers.affiliate(context, id)
    return Affiliate.from_row(row) if row is not None else None


@strawberry.type(description="Live updates over a WebSocket at /graphql (the graphql-transport-ws "
                             "protocol of graphql-ws, Apollo and urql; the token goes in "
                             "connection_init's payload). Each field pushes only when its "
                             "value changes; queries and mutations go over HTTP.")
class Subscription:
    @strawberry.subscription(description="One event per committed ETL cycle (nothing at subscribe "
                                         "time), in run order: refetch what the dashboard shows.")
    async def data_updated(self, info: Info) -> AsyncGenerator[DataUpdate, None]:
        live, _ = _live(info)
        with live.commits() as feed:
            async for commit in feed:
                yield DataUpdate(run_id=strawberry.ID(str(commit.run_id)), data_as_of=commit.as_of)

    @strawberry.subscription(description="The affiliate as `Query.affiliate(id)` answers it (totals "
                                         "over its whole five-level network, ranks; the same "
                                         "nulls for another affiliate's token): first at subscribe "
                                         "time, then after each committed ETL cycle in which one of "
                                         "its own fields changed (a rank moves when others' totals "
                                         "do). Nested lists are read again with each push.")
    async def affiliate_totals(
        self, info: Info, id: AffiliateId
    ) -> AsyncGenerator[Affiliate | None, None]:
        live, context = _live(info)
        with live.commits() as feed:  # before the first read: a commit during it is not missed
            shown = await _affiliate(live, context, id)
            yield shown
            async for _commit in feed:
                try:
                    current = await _affiliate(live, context, id)
                except (DatabaseUnavailable, QueryTimeout):
                    continue  # a passing outage ends no subscription: the next commit reads again
                if current != shown:
                    shown = current
                    yield current

