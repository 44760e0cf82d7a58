"""Which fields of a result take the execution context's short ways, and how
(schema/execution.py runs them).

A field qualifies only when strawberry compiled it to its basic attribute getter (no
resolver, no field extensions, no arguments) and its type is a known scalar, an enum, an
object or a list of non-null objects; or when it has a resolver that takes no arguments (only
``self`` and/or ``info``), no field extensions (permissions are extensions) and the schema has
no exception handlers. The answers are cached per schema field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from inspect import iscoroutinefunction
from operator import attrgetter
from types import FunctionType
from typing import Any, NamedTuple

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
)
from graphql.type.scalars import serialize_boolean, serialize_id, serialize_int, serialize_string
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

# How a field of a plan is completed. Leaves, by how a value of the exact expected type is
# serialised:
IDENTITY = 0  # the coercion returns its input: the value is the answer
INT32 = 1  # Int: the value itself when it fits in 32 bits (else graphql-core's error)
CALL = 2  # the type's own coercion (Decimal -> str, date -> isoformat, enum -> its name)
# Basic fields holding objects, completed with the object type's fields directly:
OBJECT = 3  # an object (Edge.node, Connection.pageInfo)
OBJECT_LIST = 4  # a list of non-null objects (Network.levels, Connection.edges)
# A resolver without arguments (Affiliate.network): called directly, not through strawberry's
# per-call argument conversion and extension chain, which have nothing to do for it.
RESOLVER = 5
GENERAL = 6  # anything else: graphql-core's execute_field

# graphql-core's output coercions that return an input of this exact type unchanged.
_IDENTITY_TYPES: dict[Callable[[Any], Any], type] = {
    serialize_string: str,
    serialize_id: str,
    serialize_boolean: bool,
}
# Custom scalars taken the short way, with the exact Python type they serialise (a bool is
# not an Int here and a datetime is not a Date: those go graphql-core's way).
_CALL_TYPES: dict[str, type] = {"Decimal": Decimal, "Date": date, "DateTime": datetime}


class FastField(NamedTuple):
    """How one field is completed the short way."""

    read: Callable[..., Any]  # basic fields: the attribute getter; resolvers: the call
    exact_type: type | None  # leaves: the Python type taken the short way
    kind: int
    serialize: Any  # leaves: the coercion (CALL); objects: the GraphQLObjectType
    nullable: Any  # leaves: whether null is a valid answer; objects: the field's type


class _EnumNames(dict[Any, Any]):
    """Enum member -> GraphQL name, each computed once by the type's own coercion (members
    are singletons, so the answer never changes)."""

    def __init__(self, coerce: Callable[[Any], Any]) -> None:
        super().__init__()
        self._coerce = coerce

    def __missing__(self, member: Any) -> Any:
        name = self._coerce(member)
        self[member] = name
        return name


# One entry per schema field (GraphQLField defines __eq__, so it cannot be a dict key);
# the field itself is kept in the value so its id is never reused.
_BASIC_FIELDS: dict[int, tuple[GraphQLField, FastField | None]] = {}


def basic_field(field_def: GraphQLField) -> FastField | None:
    """The short way for ``field_def``, or None when it must take the general path."""
    cached = _BASIC_FIELDS.get(id(field_def))
    if cached is not None and cached[0] is field_def:
        return cached[1]
    leaf = _basic_field(field_def)
    _BASIC_FIELDS[id(field_def)] = (field_def, leaf)
    return leaf


def _basic_field(field_def: GraphQLField) -> FastField | None:
    read = basic_reader(field_def)
    return completion(field_def.type, read) if read is not None else None


def basic_reader(field_def: GraphQLField) -> Callable[[Any], Any] | None:
    """The attribute getter of a field strawberry compiled to its basic getter (no resolver,
    no field extensions, no arguments); None for any other field."""
    strawberry_field = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    resolve = field_def.resolve
    if (
        not isinstance(strawberry_field, StrawberryField)
        or not strawberry_field.is_basic_field
        or strawberry_field.default_resolver is not getattr
        or field_def.args
        or resolve is None
        or getattr(resolve, "__name__", None) != "_get_basic_result"
        or getattr(resolve, "_is_default", False) is not True
    ):
        return None
    return attrgetter(strawberry_field.python_name)


def completion(return_type: Any, read: Callable[[Any], Any]) -> FastField | None:
    """How a value of ``return_type`` read by ``read`` is completed the short way (a leaf, an
    object or a list of non-null objects), or None when only graphql-core's way can."""
    nullable = not isinstance(return_type, GraphQLNonNull)
    named = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
    if isinstance(named, GraphQLObjectType):
        return FastField(read, None, OBJECT, named, return_type) if named.is_type_of is None else None
    if isinstance(named, GraphQLList):
        item = named.of_type
        if isinstance(item, GraphQLNonNull) and isinstance(item.of_type, GraphQLObjectType) \
                and item.of_type.is_type_of is None:
            return FastField(read, None, OBJECT_LIST, item.of_type, return_type)
        return None
    if isinstance(named, GraphQLEnumType):
        wrapped = getattr(named, "wrapped_cls", None)  # strawberry's enum type keeps the class
        if wrapped is None:
            return None
        return FastField(read, wrapped, CALL, _EnumNames(named.coerce_output_value).__getitem__, nullable)
    if not isinstance(named, GraphQLScalarType):
        return None
    coerce = named.coerce_output_value
    if coerce in _IDENTITY_TYPES:
        return FastField(read, _IDENTITY_TYPES[coerce], IDENTITY, None, nullable)
    if coerce is serialize_int:
        return FastField(read, int, INT32, None, nullable)
    if named.name in _CALL_TYPES:
        return FastField(read, _CALL_TYPES[named.name], CALL, coerce, nullable)
    return None


_RESOLVERS: dict[int, tuple[GraphQLField, FastField | None]] = {}


def simple_resolver(field_def: GraphQLField, strawberry_schema: Any) -> FastField | None:
    """A direct call of the resolver of ``field_def`` when it takes no arguments (only
    ``self`` and/or ``info``), has no field extensions (permissions are extensions) and the
    schema no exception handlers: what strawberry's wrapper would call, with the same Info."""
    cached = _RESOLVERS.get(id(field_def))
    if cached is not None and cached[0] is field_def:
        return cached[1]
    entry = _simple_resolver(field_def, strawberry_schema)
    _RESOLVERS[id(field_def)] = (field_def, entry)
    return entry


def _simple_resolver(field_def: GraphQLField, strawberry_schema: Any) -> FastField | None:
    field = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if (
        not isinstance(field, StrawberryField)
        or field.base_resolver is None
        or field.extensions
        or field.arguments
        or field_def.args
        or field.is_subscription
        or getattr(strawberry_schema, "exception_handlers", True)
        or getattr(field_def.resolve, "__name__", None) not in ("_resolver", "_async_resolver")
    ):
        return None
    resolver = field.base_resolver
    function = resolver.wrapped_func
    if (
        not isinstance(function, FunctionType)
        or resolver.parent_parameter is not None
        or resolver.root_parameter is not None
        or field.is_async != iscoroutinefunction(function)
    ):
        return None
    info_class = strawberry_schema.config.info_class
    info_parameter = resolver.info_parameter
    info_name = info_parameter.name if info_parameter is not None else None
    takes_self = resolver.self_parameter is not None

    def resolve(source: Any, info: GraphQLResolveInfo) -> Any:
        kwargs = {info_name: info_class(_raw_info=info, _field=field)} if info_name else {}
        return function(source, **kwargs) if takes_self else function(**kwargs)

    return FastField(resolve, None, RESOLVER, field_def, field_def.type)
