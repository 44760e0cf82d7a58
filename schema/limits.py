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

from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from graphql import (
    ArgumentNode,
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
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
    is_leaf_type,
    parse,
    value_from_ast_untyped,
    visit,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.schema.schema import validate_document

from resolvers.errors import PublicError, QueryTooCostly
from schema.document_cache import DocumentCache, document_bytes, document_digest, too_large

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
    ("Affiliate", "referrals"): None,
    ("Affiliate", "cpaValidations"): None,
    ("Affiliate", "transactions"): None,
}
# Summaries: `last` periods (1..1000); without it, all periods of the history: counted as
# 1000 days' worth of the period asked for (an unknown period: daily).
SUMMARY_FIELDS = frozenset({("Affiliate", "summaries")})
MAX_SUMMARIES = 1000
SUMMARY_PERIODS = {"DAILY": MAX_SUMMARIES, "WEEKLY": 144, "MONTHLY": 34, "YEARLY": 4}


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


class ParsedDocument:
    """A document that parsed, and what the caches know of it: the rule sets it passed, the
    variables its page sizes read, and its costs by page sizes."""

    __slots__ = ("costs", "document", "key", "page_variables", "passed")

    def __init__(self, document: DocumentNode, key: Hashable) -> None:
        self.document = document
        self.key = key
        self.passed: set[tuple[GraphQLSchema, tuple[type[ASTValidationRule], ...]]] = set()
        self.page_variables: tuple[str, ...] | None = None
        self.costs: dict[Hashable, int] = {}


# Shared by every request: a repeated document is parsed once (per token limit), validated
# once per rule set and costed once per page sizes. Keyed by the text's digest and bounded by
# settings.document_cache_bytes of document text (RequestLimits applies the setting); only
# successes are kept: a document that fails to parse or validate is computed again each time
# (it is size-limited first). Validation used to be strawberry's ValidationCache, which hashed
# the whole syntax tree on every request (~0.1 ms for a dashboard).
# An entry is charged its text's bytes plus BYTES_PER_TOKEN a token: a parsed tree holds far
# more than its text (measured with tracemalloc: ~420 bytes a token for the dashboard, ~600
# for a document of 2000 one-word fields, 6 KB of text and 1.2 MB of tree), and charging the
# text alone would let token-dense documents hold 200 times the bound.
DOCUMENTS: DocumentCache[Hashable, ParsedDocument] = DocumentCache()
MAX_COSTS_PER_DOCUMENT = 64
BYTES_PER_TOKEN = 640


# The syntax errors of the last documents that failed to parse, by digest: a request parses its
# document up to three times (its operation label, the response cache's plan, the schema), and
# a failing one (a token-dense 100 KB document takes ~25 ms to reach the token limit) is parsed
# once. Only the error's message and locations are kept (a GraphQLError would hold the whole
# text through its source), for a bounded number of documents.
FAILED_PARSES: OrderedDict[Hashable, tuple[str, list[Any] | None]] = OrderedDict()
MAX_FAILED_PARSES = 256


def parsed_document(query: str, max_tokens: int | None = None) -> ParsedDocument:
    """The document parsed, from the cache or now; a syntax error raises (the same error for
    the same text, remembered a while) and keeps no document."""
    key = (document_digest(query), max_tokens)
    entry = DOCUMENTS.get(key)
    if entry is None:
        failed = FAILED_PARSES.get(key)
        if failed is not None:
            FAILED_PARSES.move_to_end(key)
            again = GraphQLError(failed[0])
            again.locations = failed[1]
            raise again
        try:
            document = parse(query, max_tokens=max_tokens)
        except GraphQLError as error:
            FAILED_PARSES[key] = (error.message, error.locations)
            if len(FAILED_PARSES) > MAX_FAILED_PARSES:
                FAILED_PARSES.popitem(last=False)
            raise
        entry = ParsedDocument(document, key)
        DOCUMENTS.put(key, entry, held_bytes(query, entry.document))
    return entry


def held_bytes(query: str, document: DocumentNode) -> int:
    """What a parsed document is charged: its text's bytes and BYTES_PER_TOKEN a token (the
    tree keeps every token, comments included, linked from its location)."""
    tokens = 0
    token = document.loc.start_token if document.loc is not None else None
    while token is not None:
        tokens += 1
        token = token.next
    return document_bytes(query) + BYTES_PER_TOKEN * tokens


def validate(
    schema: GraphQLSchema, entry: ParsedDocument, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    """The document's validation errors under ``rules``, once per rule set; a document that
    fails is let go from the cache (unless it passed another rule set, another role's)."""
    if (schema, rules) in entry.passed:
        return []
    errors = validate_document(schema, entry.document, rules)
    if not errors:
        entry.passed.add((schema, rules))
    elif not entry.passed:
        DOCUMENTS.discard(entry.key, entry)
    return errors


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
        DOCUMENTS.resize(settings.document_cache_bytes)
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
    if key in PAGED_FIELDS:
        return _size(costing, field, node, "first", PAGED_FIELDS[key] or costing.max_page)
    if field is not None and "first" in field.args:  # a page not listed: at most max_page_size
        return _size(costing, field, node, "first", costing.max_page)
    if field is not None and is_list_of_objects(field.type) and not key[0].startswith("__"):
        return costing.max_page  # a list not listed (introspection's lists count 1, as ever)
    return 1


def is_list_of_objects(type_: GraphQLOutputType) -> bool:
    """A field type that is a list of non-leaf values (what the size table must cover)."""
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList) and not is_leaf_type(get_named_type(type_))
