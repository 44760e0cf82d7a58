"""Compiled execution: a document known in advance (a trusted document, a persisted one, any
document asked for again) is planned once and answered from one SQL statement, without
graphql-core's per-field machinery. Strawberry stays the schema and the validator.

A plan is made per parsed document and operation (``plan_for``), the first time it is asked
for, when every field it selects is one the compiler covers:

- ``syncStatus``, ``affiliate(id:)`` and ``me`` at the root (one affiliate field at most);
- on the affiliate, its plain fields, ``network``, ``summaries(...)`` and ``referrals(...)``
  (the connection's ``totalCount``, ``edges``, ``nodes``, ``pageInfo``) with any arguments,
  literal or variables;
- below them, plain fields and argument-less methods (``PeriodicSummary.levels``); aliases,
  ``__typename``, fragments on the same type; no directives.

Anything else (another root field, a nested affiliate, a directive, an interface) leaves the
document to the general path. So does a request the plan does not cover: a batch, variables
that do not coerce, a document not yet validated for this viewer's rules or over the cost
budget (the general path answers those errors), an affiliate read under the downline policy
(another affiliate's token: ``resolvers.prefetch``), an argument a resolver would refuse, and
any value the short completion below cannot take exactly as graphql-core would (a null where
the schema says non-null, an Int beyond 32 bits ...). The data are read by one statement
(``resolvers.prefetch``: the same rows, masks and order the loaders give), turned into the
same strawberry objects by the same ``from_row`` constructors, and completed leaf by leaf with
the scalars' own output coercions (``schema.fast_fields``): the answer is the general path's,
byte for byte (tests/schema/test_compiled.py compares both on every registered document, for
every role, and on the null and error paths). ``FATURE_COMPILED_EXECUTION=false`` turns it off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from inspect import iscoroutinefunction
from types import FunctionType
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    VariableNode,
    specified_rules,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from graphql.type.scalars import GRAPHQL_MAX_INT, GRAPHQL_MIN_INT
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import ExecutionResult
from strawberry.types.field import StrawberryField

from resolvers import prefetch
from resolvers.context import Context
from resolvers.prefetch import Asks, NotCovered, ReferralAsk, SummaryAsk
from resolvers.viewer import FULL
from schema import fast_fields
from schema.affiliate import Affiliate, Referral
from schema.cost import cached_document_cost
from schema.documents import ParsedDocument, validate
from schema.fast_fields import CALL, IDENTITY, INT32, OBJECT, OBJECT_LIST
from schema.limits import limit_rules
from schema.network import Network
from schema.pagination import connection_of
from schema.summary import PeriodicSummary
from schema.sync import sync_status_of

# Kinds of planned fields, past fast_fields' leaf and object kinds (0..4).
TYPENAME = 10  # __typename: the parent type's name
METHOD = 11  # a synchronous method without arguments (PeriodicSummary.levels, Connection.nodes)
SYNC_STATUS = 20
AFFILIATE = 21
ME = 22
NETWORK = 23
SUMMARIES = 24
REFERRALS = 25
TOTAL_COUNT = 26

# The resolvers the compiler answers from the prefetched rows, by (type, field).
_SPECIAL: dict[tuple[str, str], int] = {
    ("Query", "syncStatus"): SYNC_STATUS,
    ("Query", "affiliate"): AFFILIATE,
    ("Query", "me"): ME,
    ("Affiliate", "network"): NETWORK,
    ("Affiliate", "summaries"): SUMMARIES,
    ("Affiliate", "referrals"): REFERRALS,
    ("ReferralConnection", "totalCount"): TOTAL_COUNT,
}
_ROOTS = (SYNC_STATUS, AFFILIATE, ME)


class Fallback(Exception):
    """This answer is the general path's (a value the short completion does not take)."""


@dataclass(slots=True)
class Planned:
    """One field of a plan."""

    key: str  # the response name
    kind: int
    read: Callable[[Any], Any] | None = None
    exact_type: type | None = None
    serialize: Any = None  # leaves: the coercion; objects: their type; __typename: the name
    nullable: bool = True
    item_nullable: bool = False
    children: tuple[Planned, ...] = ()
    node: FieldNode | None = None
    definition: GraphQLField | None = None
    fixed: dict[str, Any] | None = None  # the arguments, when they use no variable (coerced once)


@dataclass(slots=True)
class Plan:
    """A compiled operation."""

    operation: OperationDefinitionNode
    roots: tuple[Planned, ...]


class _NotCompilable(Exception):
    """The document selects something the compiler does not cover."""


# ------------------------------------------------------------------ compiling


def plan_for(schema: Any, entry: ParsedDocument, operation_name: str | None) -> Plan | None:
    """The plan of ``operation_name`` in the parsed document (made once), or None when the
    compiler does not cover it."""
    plans = entry.plans
    if plans is None:
        plans = entry.plans = {}
    if operation_name in plans:
        return plans[operation_name]
    plan = _compile(schema, entry, operation_name)
    if len(plans) < 16:  # a document names a few operations; never an unbounded map
        plans[operation_name] = plan
    return plan


def _compile(schema: Any, entry: ParsedDocument, operation_name: str | None) -> Plan | None:
    graphql_schema = schema._schema
    operations = [d for d in entry.document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        operation = operations[0] if len(operations) == 1 else None
    else:
        operation = next(
            (o for o in operations if o.name is not None and o.name.value == operation_name), None
        )
    if operation is None or operation.operation is not OperationType.QUERY or operation.directives:
        return None
    if any(v.directives for v in operation.variable_definitions or ()):
        return None
    fragments = {d.name.value: d for d in entry.document.definitions if isinstance(d, FragmentDefinitionNode)}
    try:
        roots = _fields(graphql_schema.query_type, operation.selection_set, fragments, schema)
    except _NotCompilable:
        return None
    if any(r.kind not in (*_ROOTS, TYPENAME) for r in roots):
        return None
    if sum(r.kind in (AFFILIATE, ME) for r in roots) > 1:
        return None
    return Plan(operation, roots)


def _fields(
    parent: GraphQLObjectType, selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode], schema: Any,
) -> tuple[Planned, ...]:
    if selection_set is None:
        raise _NotCompilable
    planned: list[Planned] = []
    for node in _flatten(parent, selection_set, fragments, set()):
        planned.append(_field(parent, node, fragments, schema))
    keys = [p.key for p in planned]
    if len(set(keys)) != len(keys):
        raise _NotCompilable  # the same response name twice: graphql-core merges them
    return tuple(planned)


def _flatten(
    parent: GraphQLObjectType, selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode],
    seen: set[str],
) -> list[FieldNode]:
    """The fields of a selection set in response order, fragments on ``parent`` itself inlined."""
    nodes: list[FieldNode] = []
    for selection in selection_set.selections:
        if selection.directives:
            raise _NotCompilable
        if isinstance(selection, FieldNode):
            nodes.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            if selection.type_condition is not None and selection.type_condition.name.value != parent.name:
                raise _NotCompilable
            nodes += _flatten(parent, selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or fragment.directives or fragment.type_condition.name.value != parent.name:
                raise _NotCompilable
            if name in seen:
                continue  # graphql-core collects a fragment once per selection set
            seen.add(name)
            nodes += _flatten(parent, fragment.selection_set, fragments, seen)
        else:  # pragma: no cover - the three kinds of selection
            raise _NotCompilable
    return nodes


def _field(
    parent: GraphQLObjectType, node: FieldNode, fragments: dict[str, FragmentDefinitionNode], schema: Any
) -> Planned:
    name = node.name.value
    key = node.alias.value if node.alias is not None else name
    if name == "__typename":
        return Planned(key, TYPENAME, serialize=parent.name, nullable=False)
    definition = parent.fields.get(name)
    if definition is None or name.startswith("__"):
        raise _NotCompilable
    strawberry_field = (definition.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if not isinstance(strawberry_field, StrawberryField) or strawberry_field.extensions:
        raise _NotCompilable  # permissions and other field extensions run on the general path
    special = _SPECIAL.get((parent.name, name))
    if special is not None:
        object_type = _object_of(definition.type)
        children = () if object_type is None else _fields(object_type, node.selection_set, fragments, schema)
        return Planned(key, special, nullable=not isinstance(definition.type, GraphQLNonNull),
                       serialize=object_type, children=children, node=node, definition=definition)
    if definition.args:
        raise _NotCompilable
    read = fast_fields.basic_reader(definition)
    kind = METHOD
    if read is None:
        read = _method(strawberry_field)
    else:
        kind = OBJECT
    if read is None:
        raise _NotCompilable
    object_type = _object_of(definition.type)
    nullable = not isinstance(definition.type, GraphQLNonNull)
    if object_type is not None:
        children = _fields(object_type, node.selection_set, fragments, schema)
        if kind == OBJECT and isinstance(_named(definition.type), GraphQLList):
            kind = OBJECT_LIST
        return Planned(key, kind, read, serialize=object_type, nullable=nullable, children=children,
                       node=node, definition=definition)
    leaf = fast_fields.completion(definition.type, read)
    if kind == METHOD or leaf is None or leaf.kind > CALL or node.selection_set is not None:
        raise _NotCompilable  # a method returning a leaf: none is covered
    return Planned(key, leaf.kind, read, leaf.exact_type, leaf.serialize, bool(leaf.nullable), node=node,
                   definition=definition)


def _method(field: StrawberryField) -> Callable[[Any], Any] | None:
    """A synchronous resolver taking only ``self`` (no info, no arguments): called as is."""
    resolver = field.base_resolver
    if resolver is None or field.arguments or field.is_async:
        return None
    function = resolver.wrapped_func
    if (
        not isinstance(function, FunctionType) or iscoroutinefunction(function)
        or resolver.self_parameter is None or resolver.info_parameter is not None
        or resolver.parent_parameter is not None or resolver.root_parameter is not None
    ):
        return None
    return function


def _named(return_type: Any) -> Any:
    return return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type


def _object_of(return_type: Any) -> GraphQLObjectType | None:
    """The object type of a field (an object, or a list of non-null objects), None for a leaf."""
    named = _named(return_type)
    if isinstance(named, GraphQLList):
        if not isinstance(named.of_type, GraphQLNonNull):
            return None if not isinstance(named.of_type, GraphQLObjectType) else _uncovered()
        named = named.of_type.of_type
    return named if isinstance(named, GraphQLObjectType) else None


def _uncovered() -> Any:
    raise _NotCompilable  # a list of nullable objects: none is covered


# ------------------------------------------------------------------ running


def rules_for(context: Context) -> tuple[Any, ...]:
    """The validation rules the general path applies for this viewer (schema/limits.py)."""
    settings = context.settings
    introspection = context.viewer.may_introspect(settings.introspection_for_affiliates)
    return tuple(specified_rules) + limit_rules(settings.max_query_depth, settings.max_aliases, introspection)


def admitted(schema: Any, entry: ParsedDocument, operation_name: str | None, context: Context,
             variables: dict[str, Any] | None) -> bool:
    """Whether the general path would execute this request: the document passes validation
    under this viewer's rules (checked once per rule set, by the general path's own check,
    schema/documents.py) and is within the cost budget."""
    if validate(schema._schema, entry, rules_for(context)):
        return False  # the general path answers the validation errors
    settings = context.settings
    cost = cached_document_cost(
        schema._schema, entry, operation_name, variables or {}, settings.max_page_size
    )
    return cost <= settings.max_query_cost


@dataclass(slots=True)
class Prepared:
    """A plan with one request's arguments checked: what it reads."""

    plan: Plan
    asks: Asks


def prepare(plan: Plan, schema: Any, context: Context, variables: dict[str, Any] | None) -> Prepared:
    """The request's variables coerced and arguments checked, before anything is read.
    ``NotCovered``: the general path answers this request (its errors, a downline read)."""
    coerced = get_variable_values(schema._schema, plan.operation.variable_definitions or (), variables or {})
    if isinstance(coerced, list):
        raise NotCovered  # the general path reports the variables' errors
    asks = Asks()
    for root in plan.roots:
        _ask(root, context, coerced, asks)
    return Prepared(plan, asks)


async def run(prepared: Prepared, context: Context) -> ExecutionResult:
    """The answer, from one statement. ``Fallback`` (a value the short completion does not
    take) or a failed read: the general path answers instead (nothing was sent)."""
    fetched = await prefetch.fetch(context, prepared.asks)
    return ExecutionResult(data=_answer(prepared.plan, fetched), errors=None)


async def execute(
    plan: Plan, schema: Any, context: Context, variables: dict[str, Any] | None
) -> ExecutionResult:
    """``prepare`` then ``run``."""
    return await run(prepare(plan, schema, context, variables), context)


def _ask(root: Planned, context: Context, variables: VariableValues, asks: Asks) -> None:
    """What the root field reads, its arguments checked as the resolvers check them."""
    if root.kind == SYNC_STATUS:
        asks.sync = True
        return
    if root.kind not in (AFFILIATE, ME):
        return
    argument = _arguments(root, variables).get("id") if root.kind == AFFILIATE else None
    target = prefetch.target_of(context, "me" if root.kind == ME else "affiliate", argument)
    if target is None:
        return
    asks.affiliate = target
    for child in root.children:
        if child.kind == NETWORK:
            asks.network = True
        elif child.kind == SUMMARIES:
            values = _arguments(child, variables)
            levels = any(c.node is not None and c.node.name.value == "levels" for c in child.children)
            asks.summaries.append(SummaryAsk.of(values["period"].value, values.get("from"), values.get("to"),
                                                values.get("last"), levels))
        elif child.kind == REFERRALS:
            values = _arguments(child, variables)
            status = values.get("status")
            asks.referrals.append(ReferralAsk.of(
                context, values.get("first"), values.get("after"), values.get("level"),
                status.value if status is not None else None,
                counted=any(c.kind == TOTAL_COUNT for c in child.children),
            ))


def _arguments(field: Planned, variables: VariableValues) -> dict[str, Any]:
    """The field's arguments coerced as graphql-core coerces them (once for literals only)."""
    fixed = field.fixed
    if fixed is not None:
        return fixed
    assert field.definition is not None and field.node is not None
    try:
        values = get_argument_values(field.definition, field.node, variables)
    except Exception as exc:  # the general path reports it
        raise NotCovered from exc
    if not any(_has_variable(a.value) for a in field.node.arguments or ()):
        field.fixed = values  # the same every time: no variable in them
    return values


def _has_variable(value: Any) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_has_variable(v) for v in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_variable(f.value) for f in value.fields)
    return False


def _answer(plan: Plan, fetched: prefetch.Fetched) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for root in plan.roots:
        if root.kind == TYPENAME:
            data[root.key] = root.serialize
        elif root.kind == SYNC_STATUS:
            data[root.key] = _object(root, sync_status_of(fetched.sync), fetched)
        elif fetched.affiliate is None:  # no such affiliate (or `me` of a staff token)
            data[root.key] = None
        else:
            data[root.key] = _object(root, Affiliate.from_row(fetched.affiliate), fetched, _Cursor())
    return data


class _Cursor:
    """Which summaries / referrals ask is next (the plan's order is the asks' order)."""

    __slots__ = ("referrals", "summaries")

    def __init__(self) -> None:
        self.summaries = 0
        self.referrals = 0


def _object(parent: Planned, source: Any, fetched: prefetch.Fetched, cursor: _Cursor | None = None,
            count: int = 0) -> dict[str, Any]:
    """The fields of one object of ``parent``'s type, in response order, as graphql-core would
    complete them (``count``: a referral connection's totalCount)."""
    is_type_of = parent.serialize.is_type_of
    if is_type_of is not None and not is_type_of(source, None):
        raise Fallback  # graphql-core's error for a value of another type
    result: dict[str, Any] = {}
    for field in parent.children:
        kind = field.kind
        if kind <= CALL:
            # graphql-core's leaf completion, for a value of exactly the expected type or null
            value = field.read(source)  # type: ignore[misc]
            if type(value) is field.exact_type:
                if kind == IDENTITY:
                    result[field.key] = value
                elif kind == INT32:
                    result[field.key] = _leaf_int(value)
                else:
                    coerced = field.serialize(value)
                    if coerced is None or coerced is Undefined:
                        raise Fallback
                    result[field.key] = coerced
            elif value is None and field.nullable:
                result[field.key] = None
            else:
                raise Fallback
        elif kind == TYPENAME:
            result[field.key] = field.serialize
        elif kind in (OBJECT, OBJECT_LIST, METHOD):
            result[field.key] = _complete(field, field.read(source), fetched, cursor)  # type: ignore[misc]
        elif kind == NETWORK:
            result[field.key] = _object(field, Network.from_row(fetched.network, FULL), fetched)
        elif kind == SUMMARIES:
            assert cursor is not None
            rows = fetched.summaries[cursor.summaries]
            cursor.summaries += 1
            result[field.key] = [_object(field, PeriodicSummary.from_row(r), fetched) for r in rows]
        elif kind == REFERRALS:
            assert cursor is not None
            page = fetched.referrals[cursor.referrals]
            total = fetched.referral_counts[cursor.referrals]
            cursor.referrals += 1
            result[field.key] = _object(field, connection_of(page, Referral.from_row), fetched, count=total)
        elif kind == TOTAL_COUNT:
            result[field.key] = _leaf_int(count)
        else:  # pragma: no cover - every planned kind is handled above
            raise Fallback
    return result


def _complete(field: Planned, value: Any, fetched: prefetch.Fetched, cursor: _Cursor | None) -> Any:
    """An object or a list of non-null objects, as graphql-core completes them."""
    if value is None:
        if field.nullable:
            return None
        raise Fallback
    if type(value) is not list:
        if field.kind == OBJECT_LIST:
            raise Fallback
        return _object(field, value, fetched, cursor)
    if field.kind == OBJECT:
        raise Fallback
    items = []
    for item in value:
        if item is None:
            raise Fallback
        items.append(_object(field, item, fetched, cursor))
    return items


def _leaf_int(value: object) -> int:
    if type(value) is int and GRAPHQL_MIN_INT <= value <= GRAPHQL_MAX_INT:
        return value
    raise Fallback
