"""Relay-style connections: ``edges { cursor node }``, ``pageInfo``, ``totalCount``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import strawberry

from resolvers.pagination import Page

T = TypeVar("T")


@strawberry.type(description="Forward pagination state; pass endCursor as `after` for the next page.")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when more items follow this page: ask again with `after: endCursor`.")
    has_previous_page: bool = strawberry.field(
        description="True when this page was asked for after a cursor (items come before it); "
                    "false on the first page.")
    start_cursor: str | None = strawberry.field(
        description="The cursor of the page's first item; null when the page is empty.")
    end_cursor: str | None = strawberry.field(
        description="The cursor of the page's last item (pass it as `after` for the next page); "
                    "null when the page is empty.")


@strawberry.type(description="One item of a connection's page with its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Opaque and stable: a keyset position, not an offset.")
    node: T = strawberry.field(description="The item itself.")


@strawberry.type(description="One page of a list (Relay connection): its items with their cursors, the "
                             "paging state and, when asked for, the size of the whole list.")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The page's items with their cursors, in the "
                                                        "list's order.")
    page_info: PageInfo = strawberry.field(description="Where this page is: whether more items follow, "
                                                       "and the cursors to continue from.")
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="The nodes of this page, without cursors.")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]

    @strawberry.field(description="How many items the whole list has (all pages), with the filters; "
                                  "counted only when this field is asked for.")
    async def total_count(self) -> int:
        return await self.count()


def connection(
    nodes: list[T], cursors: list[str], has_next_page: bool, after: str | None,
    count: Callable[[], Awaitable[int]],
) -> Connection[T]:
    edges = [Edge(cursor=c, node=n) for c, n in zip(cursors, nodes, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next_page,
            has_previous_page=after is not None,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        ),
        count=count,
    )


def connection_of(page: Page[Any], node: Callable[[Any], T]) -> Connection[T]:
    """A resolver's page as a Relay connection, each item made a node by ``node``."""
    return connection([node(i) for i in page.items], page.cursors, page.has_next_page, page.after, page.count)
