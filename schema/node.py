"""Relay's ``Node`` interface and the root fields ``node(id:)`` and ``nodes(ids:)``.

Each type implementing ``Node`` registers how a row of it becomes the type
(``register``), in its own module; the global ids and the lookups, with the viewer's rules,
are ``resolvers.node``'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from resolvers import node as node_resolvers

GLOBAL_ID = ("Opaque global id of this object, stable across runs: the same object always has the "
             "same id. Pass it to `node(id:)` to fetch the object again; do not parse it (its "
             "business number has a field of its own).")


@strawberry.interface(description="An object with an opaque, stable global id; `node(id:)` fetches it "
                                  "again under the same rules as the type's own root field.")
class Node:
    id: strawberry.ID = strawberry.field(description=GLOBAL_ID)


# Type name -> how a row (or record) the resolvers return becomes that type.
_TYPES: dict[str, Callable[[Any], Node]] = {}


def register(type_name: str, convert: Callable[[Any], Node]) -> None:
    """Declare how ``node`` builds a ``type_name`` from what ``resolvers.node`` read."""
    _TYPES[type_name] = convert


def _as_node(found: tuple[str, Any] | None) -> Node | None:
    if found is None:
        return None
    type_name, row = found
    return _TYPES[type_name](row)


@strawberry.type
class NodeQueries:
    @strawberry.field(description="The object with this global id; null when there is none or the "
                                  "token may not see it (exactly as the type's own root field: an "
                                  "affiliate token reaches itself and its downline, its own "
                                  "statements). A malformed id is a BAD_USER_INPUT error.")
    async def node(
        self, info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global id (a Node's `id`).")],
    ) -> Node | None:
        return _as_node(await node_resolvers.node(info.context, id))

    @strawberry.field(description="`node` of each id, in the same order (null where `node` is null); "
                                  "the ids of one type are read together.")
    async def nodes(
        self, info: Info,
        ids: Annotated[list[strawberry.ID], strawberry.argument(
            description=f"Global ids (Nodes' `id`), at most {node_resolvers.MAX_IDS}.")],
    ) -> list[Node | None]:
        return [_as_node(f) for f in await node_resolvers.nodes(info.context, ids)]
