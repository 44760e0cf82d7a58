"""Every element of the schema says what it means (issue 12): each type, field, argument,
input field, enum value and custom scalar the project declares has a description, and none
is a placeholder. The schema is walked as graphql-core sees it, so a type added later is
covered without being listed here."""

from __future__ import annotations

import re
from enum import Enum

import pytest
import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    specified_directives,
)

from schema.enums import described_enum
from schema.root import schema

# graphql-core's own scalars; every other named type is the project's (or a library's that
# it chose to expose, which then must say what it means here too).
BUILT_IN_SCALARS = frozenset({"String", "Int", "Float", "Boolean", "ID"})
MIN_WORDS = 3
PLACEHOLDER_WORDS = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b|^description\b", re.IGNORECASE)


def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def problem(name: str, description: str | None) -> str | None:
    """Why ``description`` does not describe the element called ``name`` (None when it does)."""
    text = (description or "").strip()
    if not text:
        return "no description"
    if _normalised(text) == _normalised(name):
        return f"a placeholder (its own name): {text!r}"
    if PLACEHOLDER_WORDS.search(text):
        return f"a placeholder: {text!r}"
    if len(text.split()) < MIN_WORDS:
        return f"fewer than {MIN_WORDS} words: {text!r}"
    return None


def undescribed(graphql_schema: GraphQLSchema) -> list[str]:
    """One line per element of the schema without a real description."""
    found: list[str] = []

    def check(kind: str, path: str, name: str, description: str | None) -> None:
        reason = problem(name, description)
        if reason is not None:
            found.append(f"{kind} {path}: {reason}")

    for type_name, named in sorted(graphql_schema.type_map.items()):
        if type_name.startswith("__") or type_name in BUILT_IN_SCALARS:
            continue
        check("type", type_name, type_name, named.description)
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in named.fields.items():
                check("field", f"{type_name}.{field_name}", field_name, field.description)
                for arg_name, arg in field.args.items():
                    check("argument", f"{type_name}.{field_name}({arg_name})", arg_name, arg.description)
        elif isinstance(named, GraphQLInputObjectType):
            for field_name, input_field in named.fields.items():
                check("input field", f"{type_name}.{field_name}", field_name, input_field.description)
        elif isinstance(named, GraphQLEnumType):
            for value_name, value in named.values.items():
                check("enum value", f"{type_name}.{value_name}", value_name, value.description)
        elif isinstance(named, GraphQLUnionType):
            pass  # a union has no members of its own to describe: its type line is checked above
    built_in_directives = {d.name for d in specified_directives}
    for directive in graphql_schema.directives:
        if directive.name in built_in_directives:
            continue
        check("directive", f"@{directive.name}", directive.name, directive.description)
        for arg_name, arg in directive.args.items():
            check("argument", f"@{directive.name}({arg_name})", arg_name, arg.description)
    return found


def test_every_element_of_the_schema_is_described() -> None:
    missing = undescribed(schema._schema)
    assert not missing, (
        f"{len(missing)} schema elements do not say what they mean (unit, period, time zone, "
        "level 1 or the whole network):\n" + "\n".join(missing)
    )


# A schema the project never had (strawberry resolves annotations at module scope).
@strawberry.enum
class Colour(Enum):
    RED = "red"


@strawberry.input(description="A filter of widgets by their colour and size.")
class WidgetFilter:
    colour: Colour | None = None
    size: int | None = strawberry.field(default=None, description="Size")


@strawberry.type
class Widget:
    name: str = strawberry.field(description="The widget's name as its maker spells it.")
    weight: int = strawberry.field(description="TODO weigh it")


@strawberry.type(description="The root of the widgets' queries, for this test only.")
class WidgetQuery:
    @strawberry.field(description="Widgets matching the filter, the heaviest first.")
    def widgets(self, filter: WidgetFilter | None = None) -> list[Widget]:
        return []


def test_the_check_catches_what_is_missing_in_any_new_type() -> None:
    """The walker finds undescribed elements of types it has never seen, of every kind."""
    found = undescribed(strawberry.Schema(query=WidgetQuery)._schema)
    assert [line.split(":")[0] for line in found] == [
        "type Colour",
        "enum value Colour.RED",
        "type Widget",
        "field Widget.weight",
        "input field WidgetFilter.colour",
        "input field WidgetFilter.size",
        "argument WidgetQuery.widgets(filter)",
    ]


def test_described_enum_refuses_a_member_without_a_description() -> None:
    class Shape(Enum):
        ROUND = "round"
        SQUARE = "square"

    with pytest.raises(TypeError, match="SQUARE"):
        described_enum("The outline of a widget, seen from above.", ROUND="A circle, seen from above.")(Shape)
