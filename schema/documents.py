"""The parsed documents every request shares: a repeated document is parsed once (per token
limit), validated once per rule set and costed once per page sizes (``schema.cost``); keyed by
the text's digest, bounded in bytes, successes only."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    parse,
)
from strawberry.schema.schema import validate_document

from schema.document_cache import DocumentCache, document_bytes, document_digest


class ParsedDocument:
    """A document that parsed, and what the caches know of it: the rule sets it passed, the
    variables its page sizes read, and its costs by page sizes."""

    __slots__ = ("costs", "document", "key", "page_variables", "passed", "plans")

    def __init__(self, document: DocumentNode, key: Hashable) -> None:
        self.document = document
        self.key = key
        self.passed: set[tuple[GraphQLSchema, tuple[type[ASTValidationRule], ...]]] = set()
        self.page_variables: tuple[str, ...] | None = None
        self.costs: dict[Hashable, int] = {}
        # Compiled plans by operation name (schema/compiled.py), made on first use.
        self.plans: dict[str | None, Any] | None = None


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
