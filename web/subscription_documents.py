"""What a graphql-ws ``subscribe`` may run (web/subscriptions.py): the schema as the WebSocket
handler sees it. Subscriptions only (queries and mutations go over HTTP: ``BAD_REQUEST``);
each with its own context; the cost budget checked before the subscription starts (strawberry's
subscription path runs RequestLimits' ``on_execute`` but ignores the result it sets); every
error coded and unexpected ones masked as over HTTP (ErrorPolicy only runs once a stream ends).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, OperationType, specified_rules
from strawberry.schema import BaseSchema
from strawberry.types.execution import PreExecutionError
from strawberry.utils.aio import aclosing

from db.settings import Settings
from resolvers.errors import QueryTooCostly
from schema.cost import cached_document_cost
from schema.document_cache import too_large
from schema.documents import parsed_document, validate
from schema.errors import public_error
from schema.limits import limit_rules
from web.state import RequestContext

SUBSCRIPTION_FIELDS = ("dataUpdated", "affiliateTotals")


class SubscriptionsOnly:
    """The schema as the WebSocket handler sees it: subscriptions only, each with its own
    context, errors coded and masked as over HTTP (ErrorPolicy runs once a stream ends)."""

    def __init__(self, schema: BaseSchema) -> None:
        self.schema = schema

    async def stream(self, query: str | None, variable_values: dict[str, Any] | None = None,
                     context_value: Any = None, root_value: Any = None,
                     operation_name: str | None = None, **_: Any) -> AsyncGenerator[Any, None]:
        context = context_value.operation_context()
        refusal = self._refusal(query, variable_values, operation_name, context)
        if refusal is not None:
            return _refused(refusal)
        source = await self.schema.subscribe(
            query, variable_values=variable_values, context_value=context,
            root_value=root_value, operation_name=operation_name,
        )
        return _public(source)

    def _refusal(self, query: str | None, variables: dict[str, Any] | None, operation_name: str | None,
                 context: RequestContext) -> GraphQLError | None:
        """A query or mutation (WebSockets carry subscriptions only), or a document over the
        cost budget: RequestLimits' check, which strawberry's subscription path skips (it runs
        on_execute but ignores the result it sets). A document that does not parse or validate
        is left to the stream, which answers it as over HTTP."""
        settings = context.settings
        if not query or too_large(query, settings.max_document_bytes):
            return None
        try:
            entry = parsed_document(query, settings.max_tokens)
        except GraphQLError:
            return None
        operation = _chosen_operation(entry.document.definitions, operation_name)
        if operation is not None and operation.operation is not OperationType.SUBSCRIPTION:
            return GraphQLError("Only subscriptions go over the WebSocket: send queries and mutations over "
                                "HTTP", extensions={"code": "BAD_REQUEST"})
        graphql_schema = self.schema._schema  # type: ignore[attr-defined]
        introspection = context.viewer.may_introspect(settings.introspection_for_affiliates)
        limits = limit_rules(settings.max_query_depth, settings.max_aliases, introspection)
        rules = (*specified_rules, *limits)
        if validate(graphql_schema, entry, rules):
            return None
        cost = cached_document_cost(graphql_schema, entry, operation_name, variables or {},
                                    settings.max_page_size)
        if cost <= settings.max_query_cost:
            return None
        error = QueryTooCostly(f"Query cost {cost} exceeds the budget of {settings.max_query_cost}: ask for "
                               "smaller pages (first/last) or fewer nested lists")
        return GraphQLError(error.message, original_error=error, extensions=error.extensions)


async def _refused(error: GraphQLError) -> AsyncGenerator[Any, None]:
    yield PreExecutionError(data=None, errors=[error])


async def _public(source: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
    async with aclosing(source):
        async for result in source:
            if result.errors:
                result.errors = [public_error(e) for e in result.errors]
            yield result


def _chosen_operation(definitions: Any, operation_name: str | None) -> OperationDefinitionNode | None:
    for definition in definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        name = definition.name.value if definition.name is not None else None
        if operation_name is None or name == operation_name:
            return definition
    return None


def root_field(query: str, operation_name: str | None, settings: Settings) -> str:
    """The subscription's root field, the label of its metrics ("other" for anything else)."""
    try:
        document = parsed_document(query, settings.max_tokens).document
    except GraphQLError:
        return "other"
    operation = _chosen_operation(document.definitions, operation_name)
    if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
        return "other"
    name = getattr(getattr(operation.selection_set.selections[0], "name", None), "value", None)
    return name if name in SUBSCRIPTION_FIELDS else "other"
