"""The estimated cost of a document: the number of objects it can resolve. Each field costs 1
plus its children times the size of the list it returns; a list's size is its ``first``/``last``
(a literal, the variable sent, the variable's default, the argument's default), capped at the
list's largest size, which is also used when nothing states a size. Every list field of the
schema has its largest size in the tables below, keyed by (type, field)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    Visitor,
    get_named_type,
    is_leaf_type,
    value_from_ast_untyped,
    visit,
)

from schema.documents import MAX_COSTS_PER_DOCUMENT, ParsedDocument

DEFAULT_PAGE = 20
MAX_PAGE = 100  # settings.max_page_size' default; the cost takes the settings' value
# Every field returning a list of objects has a size here, keyed by (type, field).
# Lists whose size no argument states: (type, field) -> their largest (or, where nothing bounds
# them, a nominal) size.
FIXED_LIST_SIZES: dict[tuple[str, str], int] = {
    ("Network", "levels"): 5,
    ("PeriodicSummary", "levels"): 5,
    ("Affiliate", "upline"): 5,
    ("SyncStatus", "runsInProgress"): 1,
    ("ValidateCpaResult", "validations"): 100,
    ("Mutation", "rejectUserCpaValidations"): 5,  # a user's rows: one per upline level
    # Admin lists no argument bounds (few plans, versions, criteria; a statement's month of
    # lines): nominal sizes.
    ("Query", "commissionPlans"): 20,
    ("CommissionPlan", "versions"): 20,
    ("Query", "qualificationCriteria"): 20,
    ("Statement", "lines"): 100,
    # A connection's items: its page was counted on the field returning the connection (and
    # the simulation's affiliates on simulateCommissionPlan's `first`).
    ("AffiliateConnection", "edges"): 1,
    ("AffiliateConnection", "nodes"): 1,
    ("ReferralConnection", "edges"): 1,
    ("ReferralConnection", "nodes"): 1,
    ("CpaValidationConnection", "edges"): 1,
    ("CpaValidationConnection", "nodes"): 1,
    ("TransactionConnection", "edges"): 1,
    ("TransactionConnection", "nodes"): 1,
    ("CommissionSimulation", "affiliates"): 1,
    ("StatementConnection", "edges"): 1,
    ("StatementConnection", "nodes"): 1,
    ("AuditEntryConnection", "edges"): 1,
    ("AuditEntryConnection", "nodes"): 1,
    ("SimulatedAffiliateConnection", "edges"): 1,
    ("SimulatedAffiliateConnection", "nodes"): 1,
    ("Query", "nodes"): 100,  # at most resolvers.node.MAX_IDS ids
}
# Paged lists: (type, field) -> the largest `first` (None: settings.max_page_size). Without a
# `first` the schema's default applies, else the largest. Any other field given a `first`
# is a page of at most max_page_size too.
PAGED_FIELDS: dict[tuple[str, str], int | None] = {
    ("Query", "affiliates"): None,
    ("Query", "ranking"): None,
    ("Query", "statements"): None,
    ("Query", "commissionAuditLog"): 500,
    ("Query", "simulateCommissionPlan"): 1000,
    ("Query", "statementsConnection"): None,
    ("Query", "commissionAuditLogConnection"): 500,
    ("CommissionSimulation", "affiliatesConnection"): 1000,
    ("Affiliate", "referrals"): None,
    ("Affiliate", "cpaValidations"): None,
    ("Affiliate", "transactions"): None,
}
# Fields whose `first` sizes one child list only (the deprecated CommissionSimulation.affiliates,
# paged by simulateCommissionPlan's `first`): without that child in the selection, the field
# is one object (its affiliatesConnection has its own `first`).
PAGED_CHILD: dict[tuple[str, str], str] = {("Query", "simulateCommissionPlan"): "affiliates"}
# Summaries: `last` periods (1..1000); without it, all periods of the history: counted as
# 1000 days' worth of the period asked for (an unknown period: daily).
SUMMARY_FIELDS = frozenset({("Affiliate", "summaries")})
MAX_SUMMARIES = 1000
SUMMARY_PERIODS = {"DAILY": MAX_SUMMARIES, "WEEKLY": 144, "MONTHLY": 34, "YEARLY": 4}


class _Unset:
    """A variable not sent (a sent null is None)."""


UNSET: Any = _Unset()


def cached_document_cost(
    schema: GraphQLSchema, entry: ParsedDocument, operation_name: str | None,
    variables: Mapping[str, Any], max_page: int = MAX_PAGE,
) -> int:
    """``document_cost``, computed once per document, operation and page sizes: the values of
    the variables its ``first``/``last`` read (a variable not sent is told from a null: its
    default applies, which the document fixes)."""
    names = entry.page_variables
    if names is None:
        names = entry.page_variables = _page_variables(entry.document)
    # With each value's type: 1, 1.0 and True are equal keys but not equal page sizes.
    values = tuple((type(v), v) for v in (variables.get(n, UNSET) for n in names))
    key = (schema, operation_name, max_page, values)
    try:
        cached = entry.costs.get(key)
    except TypeError:  # a variable value that cannot be a key (a list where an Int belongs)
        return document_cost(schema, entry.document.definitions, operation_name, variables, max_page)
    if cached is not None:
        return cached
    cost = document_cost(schema, entry.document.definitions, operation_name, variables, max_page)
    if len(entry.costs) >= MAX_COSTS_PER_DOCUMENT:
        entry.costs.clear()
    entry.costs[key] = cost
    return cost


def _page_variables(document: DocumentNode) -> tuple[str, ...]:
    """Names of the variables used in ``first``/``last`` arguments: all the cost reads."""
    names: set[str] = set()

    class Collect(Visitor):
        def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
            if node.name.value in ("first", "last"):
                names.update(v.name.value for v in _variables_in(node.value))

    visit(document, Collect())
    return tuple(sorted(names))


def _variables_in(node: ValueNode) -> list[VariableNode]:
    if isinstance(node, VariableNode):
        return [node]
    if isinstance(node, ListValueNode):
        return [v for item in node.values for v in _variables_in(item)]
    if isinstance(node, ObjectValueNode):
        return [v for item in node.fields for v in _variables_in(item.value)]
    return []


class _Costing(NamedTuple):
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: Mapping[str, Any]
    defaults: Mapping[str, ValueNode]  # the operation's variables' default values
    max_page: int


def document_cost(
    schema: GraphQLSchema, definitions: Any, operation_name: str | None, variables: Mapping[str, Any],
    max_page: int = MAX_PAGE,
) -> int:
    """Estimated number of objects the operation resolves: each field costs 1 plus its children
    multiplied by the size of the list it returns (sizes keyed by type and field). A size is
    the ``first``/``last`` given (a literal, else the variable sent, else the variable's
    default, else the field's default argument), at most the field's largest; with none of
    these, the largest."""
    fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if not operations:
        return 0
    operation = operations[0]
    defaults = {
        d.variable.name.value: d.default_value
        for d in operation.variable_definitions or () if d.default_value is not None
    }
    root = schema.get_root_type(operation.operation)
    costing = _Costing(schema, fragments, variables, defaults, max_page)
    return _selection_cost(costing, root, operation.selection_set, set())


def _selection_cost(
    costing: _Costing, parent: GraphQLNamedType | None, selection_set: SelectionSetNode | None,
    seen: set[str],
) -> int:
    if selection_set is None:
        return 0
    schema = costing.schema
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            field = parent.fields.get(selection.name.value) if isinstance(parent, GraphQLObjectType) else None
            child_type = get_named_type(field.type) if field is not None else None
            children = _selection_cost(costing, child_type, selection.selection_set, seen)
            key = (parent.name if parent is not None else "", selection.name.value)
            total += 1 + _list_size(costing, key, field, selection) * children
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            inner = schema.get_type(condition.name.value) if condition is not None else parent
            total += _selection_cost(costing, inner, selection.selection_set, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = costing.fragments.get(name)
            if fragment is not None and name not in seen:  # cycles are a validation error
                inner = schema.get_type(fragment.type_condition.name.value)
                total += _selection_cost(costing, inner, fragment.selection_set, seen | {name})
    return total


def _argument(costing: _Costing, node: FieldNode, name: str) -> Any:
    """The argument's value: a literal, else the variable sent, else the variable's default;
    UNSET when none of these."""
    for argument in node.arguments or ():
        if argument.name.value == name:
            given = argument.value
            if not isinstance(given, VariableNode):
                return value_from_ast_untyped(given, dict(costing.variables))
            variable = given.name.value
            if variable in costing.variables:
                return costing.variables[variable]
            if variable in costing.defaults:
                return value_from_ast_untyped(costing.defaults[variable])
            return UNSET
    return UNSET


def _size(
    costing: _Costing, field: GraphQLField | None, node: FieldNode, name: str, largest: int,
    unknown: int | None = None,
) -> int:
    """The size argument ``name`` asks for, between 1 and ``largest``; where it states none
    (not given, null, not an Int) the field's default argument, else ``unknown`` (else the
    largest)."""
    value = _argument(costing, node, name)
    if value is UNSET or value is None:  # not given, or null: the field's default applies
        value = field.args[name].default_value if field is not None and name in field.args else None
        if value is None and unknown is not None:
            return unknown
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(1, value), largest)
    return largest


def _list_size(
    costing: _Costing, key: tuple[str, str], field: GraphQLField | None, node: FieldNode
) -> int:
    fixed = FIXED_LIST_SIZES.get(key)
    if fixed is not None:
        return fixed
    if key in SUMMARY_FIELDS:
        period = _argument(costing, node, "period")
        history = SUMMARY_PERIODS.get(period, MAX_SUMMARIES) if isinstance(period, str) else MAX_SUMMARIES
        return _size(costing, field, node, "last", MAX_SUMMARIES, history)
    child = PAGED_CHILD.get(key)
    if child is not None and not _selects(costing, node.selection_set, child, set()):
        return 1
    if key in PAGED_FIELDS:
        return _size(costing, field, node, "first", PAGED_FIELDS[key] or costing.max_page)
    if field is not None and "first" in field.args:  # a page not listed: at most max_page_size
        return _size(costing, field, node, "first", costing.max_page)
    if field is not None and is_list_of_objects(field.type) and not key[0].startswith("__"):
        return costing.max_page  # a list not listed (introspection's lists count 1, as ever)
    return 1


def _selects(costing: _Costing, selection_set: SelectionSetNode | None, name: str, seen: set[str]) -> bool:
    """Whether the selection set (through its fragments) selects the field ``name``."""
    for selection in selection_set.selections if selection_set is not None else ():
        if isinstance(selection, FieldNode) and selection.name.value == name:
            return True
        if isinstance(selection, InlineFragmentNode):
            if _selects(costing, selection.selection_set, name, seen):
                return True
        if isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = costing.fragments.get(selection.name.value)
            if fragment is not None and _selects(costing, fragment.selection_set, name,
                                                 seen | {selection.name.value}):
                return True
    return False


def is_list_of_objects(type_: GraphQLOutputType) -> bool:
    """A field type that is a list of non-leaf values (what the size table must cover)."""
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList) and not is_leaf_type(get_named_type(type_))
