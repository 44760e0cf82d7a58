"""What a document may ask for: its size, depth, aliases, tokens, introspection and an
estimated cost; and the shared cache that parses, validates and costs each distinct document
once.

The size (``max_document_bytes`` of UTF-8) is checked before anything parses the text; depth
and aliases are strawberry's own limiter rules, built once per limit value so the validation
cache keeps hitting; tokens cap the parser (as ``MaxTokensLimiter`` does); introspection is
allowed per role; the cost multiplies nested list sizes (``first``, ``last``, the five levels,
the five uplines ...: every list field of the schema has its largest size in the tables
below) and is checked with the request's variables, or their defaults, or the fields'
default arguments, or else the largest sizes. Every rejection is a GraphQL error whose
``extensions.code`` names the limit.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from graphql import (
    ASTValidationRule,
    GraphQLError,
    NoSchemaIntrospectionCustomRule,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.schema.schema import validate_document

from resolvers.errors import PublicError, QueryTooCostly
from schema import documents
from schema.cost import cached_document_cost
from schema.document_cache import too_large
from schema.documents import ParsedDocument, parsed_document, validate


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


class DocumentTooLarge(PublicError):
    code = "DOCUMENT_TOO_LARGE"


class RequestLimits(SchemaExtension):
    """Refuses documents over the size limit before parsing; parses and validates through the
    shared cache, with the settings' limits for the request's viewer (``info.context``); then
    checks the operation's estimated cost.

    One extension instead of three (strawberry's ParserCache and ValidationCache did the
    caching before): strawberry builds the hook wrappers of every extension for every stage
    of every request, which cost more than the cached parse and validation themselves."""

    _entry: ParsedDocument | None = None

    def on_operation(self) -> Iterator[None]:
        ec = self.execution_context
        context = ec.context
        settings = context.settings
        documents.DOCUMENTS.resize(settings.document_cache_bytes)
        introspection = context.viewer.may_introspect(settings.introspection_for_affiliates)
        ec.parse_options["max_tokens"] = settings.max_tokens
        ec.validation_rules = tuple(ec.validation_rules) + limit_rules(
            settings.max_query_depth, settings.max_aliases, introspection
        )
        yield

    def on_parse(self) -> Iterator[None]:
        ec = self.execution_context
        query = ec.query
        if query is not None:
            limit = ec.context.settings.max_document_bytes
            if too_large(query, limit):
                response = getattr(ec.context, "response", None)
                if response is not None:  # the HTTP view's response: 400, as for a bad request
                    response.status_code = 400
                error = DocumentTooLarge(
                    f"The document is larger than {limit} bytes: send a shorter query"
                )
                raise GraphQLError(error.message, original_error=error, extensions=error.extensions)
            self._entry = parsed_document(query, ec.parse_options.get("max_tokens"))
            ec.graphql_document = self._entry.document
        yield

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        entry = self._entry
        assert ec.graphql_document is not None  # on_parse set it
        if entry is not None and entry.document is ec.graphql_document:
            ec.pre_execution_errors = validate(ec.schema._schema, entry, tuple(ec.validation_rules))
        else:
            ec.pre_execution_errors = validate_document(
                ec.schema._schema, ec.graphql_document, tuple(ec.validation_rules)
            )
        yield

    def on_execute(self) -> Iterator[None]:
        # The cost needs the variables, so it is checked here, after validation: a result set
        # before execution makes strawberry skip it.
        ec = self.execution_context
        if ec.graphql_document is not None and ec.result is None:
            settings = ec.context.settings
            budget = settings.max_query_cost
            entry = self._entry
            if entry is None or entry.document is not ec.graphql_document:
                entry = ParsedDocument(ec.graphql_document, None)
            cost = cached_document_cost(
                ec.schema._schema, entry, ec.operation_name, ec.variables or {}, settings.max_page_size
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
