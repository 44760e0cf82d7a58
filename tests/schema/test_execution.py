"""The execution context's short ways (schema/execution.py, fast_fields.py) answer exactly what graphql-core
answers: the same values for every scalar and enum, the same nulls, the same errors with the
same paths, and the same null propagation. Each query runs on two schemas built from the same
types, one with strawberry's own execution context and one with Fature's."""

from __future__ import annotations

import enum
from dataclasses import field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import strawberry

from schema.execution import FatureExecutionContext
from schema.fast_fields import (
    CALL,
    IDENTITY,
    INT32,
    OBJECT,
    OBJECT_LIST,
    RESOLVER,
    basic_field,
    simple_resolver,
)
from schema.scalars import SCALAR_OVERRIDES

SAO_PAULO = timezone(timedelta(hours=-3))


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    DARK_BLUE = "dark_blue"


@strawberry.type
class Child:
    n: int
    label: str | None = None


@strawberry.type
class Sample:
    text: str
    maybe_text: str | None
    ident: strawberry.ID
    count: int
    maybe_count: int | None
    flag: bool
    ratio: float
    money: Decimal
    maybe_money: Decimal | None
    day: date
    instant: datetime
    maybe_instant: datetime | None
    colour: Colour
    maybe_colour: Colour | None
    child: Child
    maybe_child: Child | None
    children: list[Child]
    maybe_children: list[Child] | None
    loaded: strawberry.Private[list[Any]] = field(default_factory=list)

    @strawberry.field
    async def later(self, info: strawberry.Info) -> Child:
        self.loaded.append(info.field_name)
        return Child(n=len(self.loaded))

    @strawberry.field
    def doubled(self) -> int:
        return self.count * 2

    @strawberry.field
    async def failing(self) -> Child | None:
        raise ValueError("resolver failed")


def regular(**changes: Any) -> Sample:
    values: dict[str, Any] = dict(
        text="Ana", maybe_text=None, ident=strawberry.ID("42"), count=7, maybe_count=None, flag=True,
        ratio=0.5, money=Decimal("1234.50"), maybe_money=None, day=date(2025, 3, 2),
        instant=datetime(2025, 3, 4, 2, 30, tzinfo=SAO_PAULO), maybe_instant=datetime(2025, 3, 4, 5, 30, tzinfo=UTC),
        colour=Colour.DARK_BLUE, maybe_colour=None, child=Child(n=1, label="one"), maybe_child=None,
        children=[Child(n=2), Child(n=3, label="three")], maybe_children=None,
    )
    values.update(changes)
    return Sample(**values)


def schemas(sample: Sample) -> tuple[strawberry.Schema, strawberry.Schema]:
    @strawberry.type
    class Query:
        @strawberry.field
        def sample(self) -> Sample | None:
            return sample

        @strawberry.field
        def samples(self) -> list[Sample]:
            return [sample, regular(count=9)]

    def build(execution_context_class: Any) -> strawberry.Schema:
        return strawberry.Schema(query=Query, scalar_overrides=SCALAR_OVERRIDES,
                                 execution_context_class=execution_context_class)

    return build(None), build(FatureExecutionContext)


EVERYTHING = """{ sample { text maybeText ident count maybeCount flag ratio money maybeMoney day instant
  maybeInstant colour maybeColour child { n label } maybeChild { n } children { n label }
  maybeChildren { n } later { n } doubled } }"""


def answer(result: Any) -> tuple[Any, list[dict[str, Any]]]:
    return result.data, [e.formatted for e in result.errors or []]


async def both(sample: Sample, query: str, variables: dict[str, Any] | None = None) -> tuple[Any, Any]:
    slow, fast = schemas(sample)
    expected = answer(await slow.execute(query, variables))
    sample.loaded.clear()
    got = answer(await fast.execute(query, variables))
    assert got == expected
    return expected


def test_the_fields_take_the_short_way() -> None:
    slow, _ = schemas(regular())
    sample = slow._schema.get_type("Sample")
    kinds = {name: (basic_field(f) or simple_resolver(f, slow)) for name, f in sample.fields.items()}
    assert {name: k.kind if k else None for name, k in kinds.items()} == {
        "text": IDENTITY, "maybeText": IDENTITY, "ident": IDENTITY, "count": INT32, "maybeCount": INT32,
        "flag": IDENTITY, "ratio": None, "money": CALL, "maybeMoney": CALL, "day": CALL, "instant": CALL,
        "maybeInstant": CALL, "colour": CALL, "maybeColour": CALL, "child": OBJECT, "maybeChild": OBJECT,
        "children": OBJECT_LIST, "maybeChildren": OBJECT_LIST, "later": RESOLVER, "doubled": RESOLVER,
        "failing": RESOLVER,
    }


async def test_every_scalar_and_enum_reads_the_same() -> None:
    data, errors = await both(regular(), EVERYTHING)
    assert errors == []
    assert data["sample"] | {"child": None, "children": None} == {
        "text": "Ana", "maybeText": None, "ident": "42", "count": 7, "maybeCount": None, "flag": True,
        "ratio": 0.5, "money": "1234.50", "maybeMoney": None, "day": "2025-03-02",
        "instant": "2025-03-04T02:30:00-03:00", "maybeInstant": "2025-03-04T05:30:00+00:00",
        "colour": "DARK_BLUE", "maybeColour": None, "child": None, "maybeChild": None,
        "children": None, "maybeChildren": None, "later": {"n": 1}, "doubled": 14,
    }
    assert data["sample"]["children"] == [{"n": 2, "label": None}, {"n": 3, "label": "three"}]


async def test_present_optional_values_read_the_same() -> None:
    sample = regular(maybe_text="x", maybe_count=-2_147_483_648, maybe_money=Decimal("-0.01"),
                     maybe_colour=Colour.RED, maybe_child=Child(n=5), maybe_children=[])
    data, errors = await both(sample, EVERYTHING)
    assert errors == []
    assert data["sample"]["maybeCount"] == -2_147_483_648 and data["sample"]["maybeMoney"] == "-0.01"
    assert data["sample"]["maybeColour"] == "RED" and data["sample"]["maybeChildren"] == []


@pytest.mark.parametrize("changes", [
    {"text": None},  # null for a non-null String
    {"count": None},
    {"money": None},
    {"colour": None},
    {"child": None},  # null for a non-null object
    {"children": None},  # null for a non-null list
    {"children": [Child(n=1), None]},  # a null item in [Child!]!
    {"count": 2**31},  # beyond 32 bits
    {"count": "12"},  # a string where an Int belongs: graphql-core coerces it
    {"count": True},  # a bool where an Int belongs
    {"day": datetime(2025, 3, 2, 10, tzinfo=UTC)},  # a datetime where a Date belongs
    {"text": 12},  # graphql-core refuses an int for a String
    {"ident": 42},  # an int for an ID: graphql-core turns it into "42"
    {"flag": 1},  # an int for a Boolean
    {"colour": "red"},  # the enum's value instead of the member
    {"money": ValueError("boom")},  # an exception as a value is raised
    {"child": "not a child"},
])
async def test_irregular_values_give_the_same_answer(changes: dict[str, Any]) -> None:
    await both(regular(**changes), EVERYTHING)


async def test_non_null_violation_nulls_the_parent_with_the_same_error() -> None:
    data, errors = await both(regular(text=None), "{ sample { count text } }")
    assert data == {"sample": None}
    assert errors == [{"message": "Cannot return null for non-nullable field Sample.text.",
                       "locations": [{"line": 1, "column": 18}], "path": ["sample", "text"]}]
    data, errors = await both(regular(children=[Child(n=1), None]), "{ samples { count children { n } } }")
    assert data is None and errors[0]["path"] == ["samples", 0, "children", 1]


async def test_resolver_errors_and_nested_lists() -> None:
    data, errors = await both(regular(), "{ samples { failing { n } later { n } children { n label } } }")
    assert [e["path"] for e in errors] == [["samples", 0, "failing"], ["samples", 1, "failing"]]
    assert errors[0]["message"] == "resolver failed"
    assert data["samples"][1]["later"] == {"n": 1} and data["samples"][0]["children"][1] == {"n": 3, "label": "three"}


async def test_aliases_fragments_and_directives() -> None:
    query = """query Q($no: Boolean!) { sample { a: count b: count ...F c: money @include(if: $no)
      d: money @skip(if: $no) kids: children { ...C } } }
      fragment F on Sample { money text colour child { ...C } }
      fragment C on Child { n label }"""
    for no in (True, False):
        data, errors = await both(regular(), query, {"no": no})
        assert errors == [] and list(data["sample"]) == (
            ["a", "b", "money", "text", "colour", "child", "c", "kids"] if no
            else ["a", "b", "money", "text", "colour", "child", "d", "kids"])
