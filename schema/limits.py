"""What a document may ask for: depth, aliases, tokens, introspection and an estimated cost.

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
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    value_from_ast_untyped,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension

from schema.errors import QueryTooCostly

# Fields returning lists whose size no argument states: (field name) -> assumed size.
FIXED_LIST_SIZES = {"levels": 5, "upline": 5, "runsInProgress": 1, "validations": 100}
# A summaries field without `last` (daily over the whole history): assumed this many periods.
UNBOUNDED_SUMMARIES = 100
DEFAULT_PAGE = 20


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


class RequestLimits(SchemaExtension):
    """Applies the settings' limits for the request's viewer (``info.context``)."""

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

    def on_execute(self) -> Iterator[None]:
        # The cost needs the variables, so it is checked here, after validation: a result set
        # before execution makes strawberry skip it.
        ec = self.execution_context
        if ec.graphql_document is not None and ec.result is None:
            budget = ec.context.settings.max_query_cost
            cost = document_cost(ec.graphql_document.definitions, ec.operation_name, ec.variables or {})
            if cost > budget:
                error = QueryTooCostly(
                    f"Query cost {cost} exceeds the budget of {budget}: ask for smaller pages "
                    "(first/last) or fewer nested lists"
                )
                ec.result = GraphQLExecutionResult(data=None, errors=[
                    GraphQLError(error.message, original_error=error, extensions=error.extensions)
                ])
        yield


def document_cost(definitions: Any, operation_name: str | None, variables: Mapping[str, Any]) -> int:
    """Estimated number of objects the operation resolves: each field costs 1 plus its children
    multiplied by the size of the list it returns."""
    fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if not operations:
        return 0
    return _selection_cost(operations[0].selection_set, fragments, variables, set())


def _selection_cost(
    selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode],
    variables: Mapping[str, Any], seen: set[str],
) -> int:
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            children = _selection_cost(selection.selection_set, fragments, variables, seen)
            total += 1 + _list_size(selection, variables) * children
        elif isinstance(selection, InlineFragmentNode):
            total += _selection_cost(selection.selection_set, fragments, variables, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:  # cycles are a validation error
                total += _selection_cost(fragment.selection_set, fragments, variables, seen | {name})
    return total


def _argument(field: FieldNode, name: str, variables: Mapping[str, Any]) -> Any:
    for argument in field.arguments or ():
        if argument.name.value == name:
            return _value(argument.value, variables)
    return None


def _value(node: ValueNode, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, VariableNode):
        return variables.get(node.name.value)
    return value_from_ast_untyped(node, variables)


def _list_size(field: FieldNode, variables: Mapping[str, Any]) -> int:
    name = field.name.value
    if name in FIXED_LIST_SIZES:
        return FIXED_LIST_SIZES[name]
    if name == "summaries":
        last = _argument(field, "last", variables)
        return max(1, last) if isinstance(last, int) else UNBOUNDED_SUMMARIES
    has_first = any(a.name.value == "first" for a in field.arguments or ())
    if has_first or name in {"affiliates", "ranking", "referrals", "cpaValidations", "transactions"}:
        first = _argument(field, "first", variables)
        return max(1, first) if isinstance(first, int) else DEFAULT_PAGE
    return 1
