"""One page of a keyset-paginated list, as resolvers return it (the schema turns it into a
Relay connection)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

@dataclass(slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    cursors: list[str]  # one opaque keyset cursor per item
    has_next_page: bool
    after: str | None  # the cursor this page was asked after (None: the first page)
    count: Callable[[], Awaitable[int]]  # the whole list's size, computed only when asked

def page_of(
    items: Sequence[T], cursor: Callable[[T], str], has_next_page: bool, after: str | None,
    count: Callable[[], Awaitable[int]],
) -> Page[T]:
    return Page(items, [cursor(i) for i in items], has_next_page, after, count)
