"""What a document may ask for: depth, aliases, tokens, introspection and an estimated cost;
and the shared caches that parse and validate each distinct document once.

Depth and aliases are strawberry's own limiter rules, built once per limit value so the
validation cache keeps hitting; tokens cap the parser (as ``MaxTokensLimiter`` does);
introspection is allowed per role; the cost multiplies nested page sizes (``first``,
``last``, the five levels, the five uplines) and is checked with the request's variables.
Every rejection is a GraphQL error whose ``extensions.code`` names the limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from graphql import (
    ArgumentNode,
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    NoSchemaIntrospectionCustomRule,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    Visitor,
    get_named_type,
    parse,
    value_from_ast_untyped,
    visit,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.schema.schema import validate_document

from resolvers.errors import QueryTooCostly

DEFAULT_PAGE = 20
# Lists whose size no argument states: (type, field) -> assumed size.
FIXED_LIST_SIZES: dict[tuple[str, str], int] = {
    ("Network", "levels"): 5,
    ("PeriodicSummary", "levels"): 5,
    ("Affiliate", "upline"): 5,
    ("SyncStatus", "runsInProgress"): 1,
    ("ValidateCpaResult", "validations"): 100,
    ("CommissionSimulation", "affiliates"): DEFAULT_PAGE,  # the simulation's page
}
# Paged lists: `first`, or DEFAULT_PAGE without it. Any other field given a `first` is a page too.
PAGED_FIELDS: frozenset[tuple[str, str]] = frozenset({
    ("Query", "affiliates"),
    ("Query", "ranking"),
    ("Affiliate", "referrals"),
    ("Affiliate", "cpaValidations"),
    ("Affiliate", "transactions"),
})
# Summaries: `last` periods, or this many without it (daily over the whole history).
SUMMARY_FIELDS = frozenset({("Affiliate", "summaries")})
UNBOUNDED_SUMMARIES = 100


@lru_cache(maxsize=32)
def limit_rules(max_depth: int, max_aliases: int, introspection: bool) -> tuple[type[ASTValidationRule], ...]:
    """The same rule classes for the same limits: strawberry's validation cache keys on them."""
    rules: list[type[ASTValidationRule]] = [
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
    ]
    if not introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return tuple(rules)


# Shared by every request, as strawberry's ParserCache and ValidationCache keep theirs: a
# repeated document is parsed and validated once (per token limit and rule set). Validations
# are keyed by the parsed document's identity (the parse cache hands out the same object);
# strawberry's cache hashed the whole syntax tree on every request (~0.1 ms for a dashboard).
MAX_CACHED_DOCUMENTS = 1024
_parse = lru_cache(maxsize=MAX_CACHED_DOCUMENTS)(parse)
_VALIDATIONS: dict[tuple[int, int, tuple[type[ASTValidationRule], ...]],
                   tuple[DocumentNode, Any, list[GraphQLError]]] = {}


def _validate(
    schema: Any, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    key = (id(document), id(schema), rules)
    cached = _VALIDATIONS.get(key)
    if cached is not None and cached[0] is document and cached[1] is schema:  # kept alive by the entry
        return cached[2]
    errors = validate_document(schema, document, rules)
    if len(_VALIDATIONS) >= MAX_CACHED_DOCUMENTS:
        _VALIDATIONS.clear()
    _VALIDATIONS[key] = (document, schema, errors)
    return errors


class RequestLimits(SchemaExtension):
    """Parses and validates through the shared caches, with the settings' limits for the
    request's viewer (``info.context``), then checks the operation's estimated cost.

    One extension instead of three (strawberry's ParserCache and ValidationCache did the
    caching before): strawberry builds the hook wrappers of every extension for every stage
    of every request, which cost more than the cached parse and validation themselves."""

    def on_operation(self) -> Iterator[None]:
        ec = self.execution_context
        context = ec.context
        settings = context.settings
        introspection = context.viewer.may_introspect(settings.introspection_for_affiliates)
        ec.parse_options["max_tokens"] = settings.max_tokens
        ec.validation_rules = ec.validation_rules + limit_rules(
            settings.max_query_depth, settings.max_aliases, introspection
        )
        yield

    def on_parse(self) -> Iterator[None]:
        ec = self.execution_context
        ec.graphql_document = _parse(ec.query, **ec.parse_options)
        yield

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        assert ec.graphql_document is not None  # on_parse set it
        ec.pre_execution_errors = _validate(ec.schema._schema, ec.graphql_document, ec.validation_rules)
        yield

    def on_execute(self) -> Iterator[None]:
        # The cost needs the variables, so it is checked here, after validation: a result set
        # before execution makes strawberry skip it.
        ec = self.execution_context
        if ec.graphql_document is not None and ec.result is None:
            budget = ec.context.settings.max_query_cost
            cost = cached_document_cost(
                ec.schema._schema, ec.graphql_document, ec.operation_name, ec.variables or {}
            )
            if cost > budget:
                error = QueryTooCostly(
                    f"Query cost {cost} exceeds the budget of {budget}: ask for smaller pages "
                    "(first/last) or fewer nested lists"
                )
                ec.result = GraphQLExecutionResult(data=None, errors=[
                    GraphQLError(error.message, original_error=error, extensions=error.extensions)
                ])
        yield


# The cost of a (cached, hence identical) document depends on the variables only through the
# page sizes: (id of the document, operation, those variables' values) -> cost. Each entry
# keeps its document alive, so an id is never reused while the entry exists.
_COSTS: dict[tuple[int, str | None, tuple[tuple[type, Any], ...]], tuple[DocumentNode, int]] = {}
_PAGE_VARIABLES: dict[int, tuple[DocumentNode, tuple[str, ...]]] = {}


def cached_document_cost(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]
) -> int:
    """``document_cost``, computed once per document, operation and page-size variables."""
    names = _page_variables(document)
    # With each value's type: 1, 1.0 and True are equal keys but not equal page sizes.
    key = (id(document), operation_name, tuple((type(v), v) for v in map(variables.get, names)))
    try:
        cached = _COSTS.get(key)
    except TypeError:  # a variable value that cannot be a key (a list where an Int belongs)
        return document_cost(schema, document.definitions, operation_name, variables)
    if cached is not None and cached[0] is document:
        return cached[1]
    cost = document_cost(schema, document.definitions, operation_name, variables)
    if len(_COSTS) >= MAX_CACHED_DOCUMENTS:
        _COSTS.clear()
    _COSTS[key] = (document, cost)
    return cost


def _page_variables(document: DocumentNode) -> tuple[str, ...]:
    """Names of the variables used in ``first``/``last`` arguments: all the cost reads."""
    cached = _PAGE_VARIABLES.get(id(document))
    if cached is not None and cached[0] is document:
        return cached[1]
    names: set[str] = set()

    class Collect(Visitor):
        def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
            if node.name.value in ("first", "last"):
                names.update(v.name.value for v in _variables_in(node.value))

    visit(document, Collect())
    found = tuple(sorted(names))
    if len(_PAGE_VARIABLES) >= MAX_CACHED_DOCUMENTS:
        _PAGE_VARIABLES.clear()
    _PAGE_VARIABLES[id(document)] = (document, found)
    return found


def _variables_in(node: ValueNode) -> list[VariableNode]:
    if isinstance(node, VariableNode):
        return [node]
    if isinstance(node, ListValueNode):
        return [v for item in node.values for v in _variables_in(item)]
    if isinstance(node, ObjectValueNode):
        return [v for item in node.fields for v in _variables_in(item.value)]
    return []


def document_cost(
    schema: GraphQLSchema, definitions: Any, operation_name: str | None, variables: Mapping[str, Any]
) -> int:
    """Estimated number of objects the operation resolves: each field costs 1 plus its children
    multiplied by the size of the list it returns (sizes keyed by type and field)."""
    fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if not operations:
        return 0
    root = schema.get_root_type(operations[0].operation)
    return _selection_cost(schema, root, operations[0].selection_set, fragments, variables, set())


def _selection_cost(
    schema: GraphQLSchema, parent: GraphQLNamedType | None, selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode], variables: Mapping[str, Any], seen: set[str],
) -> int:
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            field = parent.fields.get(selection.name.value) if isinstance(parent, GraphQLObjectType) else None
            child_type = get_named_type(field.type) if field is not None else None
            children = _selection_cost(
                schema, child_type, selection.selection_set, fragments, variables, seen
            )
            key = (parent.name if parent is not None else "", selection.name.value)
            total += 1 + _list_size(key, selection, variables) * children
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            inner = schema.get_type(condition.name.value) if condition is not None else parent
            total += _selection_cost(schema, inner, selection.selection_set, fragments, variables, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:  # cycles are a validation error
                inner = schema.get_type(fragment.type_condition.name.value)
                total += _selection_cost(
                    schema, inner, fragment.selection_set, fragments, variables, seen | {name}
                )
    return total


def _argument(field: FieldNode, name: str, variables: Mapping[str, Any]) -> Any:
    for argument in field.arguments or ():
        if argument.name.value == name:
            return _value(argument.value, variables)
    return None


def _value(node: ValueNode, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, VariableNode):
        return variables.get(node.name.value)
    return value_from_ast_untyped(node, dict(variables))


def _list_size(key: tuple[str, str], field: FieldNode, variables: Mapping[str, Any]) -> int:
    fixed = FIXED_LIST_SIZES.get(key)
    if fixed is not None:
        return fixed
    if key in SUMMARY_FIELDS:
        last = _argument(field, "last", variables)
        return max(1, last) if isinstance(last, int) else UNBOUNDED_SUMMARIES
    if key in PAGED_FIELDS or any(a.name.value == "first" for a in field.arguments or ()):
        first = _argument(field, "first", variables)
        return max(1, first) if isinstance(first, int) else DEFAULT_PAGE
    return 1
