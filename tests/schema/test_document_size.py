"""Documents are size-limited before anything parses them, and every per-document cache is
keyed by a digest, bounded by bytes of document text and keeps only documents that parsed
and validated (issue 13: distinct large documents used to stay in memory for good)."""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import graphql
import pytest

import web.graphql
import web.response_cache
from schema import documents, limits
from schema.document_cache import DocumentCache, document_bytes, document_digest, too_large
from schema.documents import parsed_document, validate
from schema.root import schema
from tests.support.clients import AFFILIATE, Clients
from tests.support.deployment import Api
from web.graphiql import DASHBOARD_QUERY
from web.response_cache import cache_plan

ROOTS = frozenset({"affiliate", "syncStatus"})


def test_the_cache_holds_at_most_its_bytes_and_evicts_the_least_recently_used() -> None:
    cache: DocumentCache[int, str] = DocumentCache(max_bytes=1000)
    for i in range(500):
        cache.put(i, f"value {i}", 30 + i % 7)
        assert cache.held_bytes <= 1000
        if i == 10:
            assert cache.get(0) == "value 0"  # used again: kept longer than 1..10
    assert 0 not in cache and 1 not in cache and 499 in cache
    assert cache.held_bytes == sum(30 + i % 7 for i in range(500) if i in cache)
    cache.put(1000, "huge", 1001)  # more than the whole bound: not kept, nothing evicted
    assert 1000 not in cache and 499 in cache
    cache.resize(100)
    assert cache.held_bytes <= 100 and 499 in cache
    cache.discard(499, "another value")  # only the value it holds
    assert 499 in cache
    cache.discard(499)
    assert 499 not in cache


def test_lru_order_and_replacement() -> None:
    cache: DocumentCache[str, int] = DocumentCache(max_bytes=30)
    cache.put("a", 1, 10)
    cache.put("b", 2, 10)
    cache.put("a", 3, 10)  # replaced: charged once
    assert cache.held_bytes == 20 and cache.get("a") == 3
    cache.put("c", 4, 10)
    cache.put("d", 5, 10)  # evicts b, the least recently used
    assert "b" not in cache and cache.get("a") == 3 and len(cache) == 3


def test_sizes_count_utf8_bytes() -> None:
    assert document_bytes("abc") == 3 and document_bytes("ção") == 5
    assert not too_large("a" * 100, 100) and too_large("a" * 101, 100)
    assert too_large("ç" * 51, 101) and not too_large("ç" * 50, 100)
    assert document_digest("{ a }") == document_digest("".join(["{ a", " }"])) != document_digest("{ b }")


def test_parsed_documents_stay_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "DOCUMENTS", DocumentCache(max_bytes=20_000))
    rules = (*graphql.specified_rules, *limits.limit_rules(10, 30, False))
    texts = [f'{{ affiliate(id: "{i}") {{ id name totalDeposits }} }} # {"x" * 200}' for i in range(400)]
    first = parsed_document(texts[0], 2000)
    for text in texts:
        entry = parsed_document(text, 2000)
        assert validate(schema._schema, entry, rules) == []
        assert documents.DOCUMENTS.held_bytes <= 20_000
    last = parsed_document(texts[-1], 2000)
    assert first.key not in documents.DOCUMENTS and last.key in documents.DOCUMENTS
    assert len(documents.DOCUMENTS) == 20_000 // documents.held_bytes(texts[-1], last.document)
    # A hit is what a fresh parse gives.
    assert graphql.print_ast(parsed_document(texts[-1], 2000).document) == graphql.print_ast(graphql.parse(texts[-1]))


@pytest.mark.parametrize("make", [
    lambda i: "{ me { " + "id " * 1990 + f"}} }} # {i}",  # token-dense: 6 KB of text, 1.2 MB of tree
    lambda i: DASHBOARD_QUERY.replace("Dashboard", f"D{i}"),
    lambda i: "{ me { id } } #" + "x" * 90_000 + str(i),
])
def test_a_parsed_document_is_charged_at_least_what_it_holds(make: Callable[[int], str]) -> None:
    texts = [make(i) for i in range(20)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        parsed = [graphql.parse(text, max_tokens=2000) for text in texts]
        held = (tracemalloc.get_traced_memory()[0] - before) / len(texts)
    finally:
        tracemalloc.stop()
    charged = documents.held_bytes(texts[0], parsed[0])
    assert held <= charged <= 2 * held + 2000


def test_cache_plans_are_bounded_and_keep_only_parsed_documents() -> None:
    plans: web.response_cache.PlanCache = DocumentCache(max_bytes=10_000)
    for i in range(300):
        query = f'query D{i} {{ affiliate(id: "{i}") {{ id }} }} # {"y" * 100}'
        plan = cache_plan(query, None, ROOTS, plans)
        assert plan is not None and plan == cache_plan(query, None, ROOTS)  # a hit equals a fresh plan
        assert cache_plan(query, None, ROOTS, plans) == plan and plans.held_bytes <= 10_000
    held = len(plans)
    for i in range(50):
        assert cache_plan(f'{{ affiliate(id: "{i}") {{ id ', None, ROOTS, plans) is None
    assert len(plans) == held  # syntax errors are not kept
    assert cache_plan("mutation { validateCpa { ok } }", None, ROOTS, plans) is None  # parsed, not cacheable


def test_operation_labels_keep_only_parsed_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    # A label is read off the shared parse: the bounded cache of parsed documents is the only
    # place a labelled document is kept, and a broken one is kept nowhere.
    monkeypatch.setattr(documents, "DOCUMENTS", DocumentCache(max_bytes=50_000))
    names = documents.DOCUMENTS
    for i in range(200):
        assert web.graphql._operation_name(f"query Q{i} {{ a }} # {'z' * 50}", None) == f"Q{i}"
        assert names.held_bytes <= 50_000
    held = len(names)
    assert web.graphql._operation_name("query Broken {", None) is None and len(names) == held
    assert web.graphql._operation_name("query Q1 { a }", "Given") == "Given"


def forbid_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a document over the limit was parsed")

    # Every parse of a request (its label, the cache plan, the schema) is documents.parsed_document's.
    monkeypatch.setattr(documents, "parse", refuse)


def test_a_document_over_the_limit_is_not_parsed_for_a_plan_or_a_label(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_parsing(monkeypatch)
    huge = '{ affiliate(id: "1") { id } } #' + "x" * 200_000
    assert cache_plan(huge, None, ROOTS, DocumentCache(), max_document_bytes=100_000) is None
    assert web.graphql._operation_name(huge, None) is None


async def test_a_document_over_the_limit_is_refused_before_parsing(
    secure: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = secure.settings.max_document_bytes
    query = '{ affiliate(id: "301") { id: affiliateId } }'
    padded = query + " #" + "x" * (limit - len(query) - 2)
    assert document_bytes(padded) == limit
    headers = secure.headers("affiliate", AFFILIATE)
    ok = await secure.post(headers, padded)  # at the limit: answered
    assert ok.status_code == 200 and ok.json()["data"] == {"affiliate": {"id": "301"}}, ok.text[:500]

    forbid_parsing(monkeypatch)
    held = documents.DOCUMENTS.held_bytes, len(documents.DOCUMENTS)
    for over in (padded + "x", padded.replace("x" * 10, "ç" * 5, 1) + "y", query + " #" + "x" * 10 * limit):
        response = await secure.post(headers, over)
        assert response.status_code == 400, response.text[:500]
        body = response.json()
        assert "data" not in body and len(body["errors"]) == 1  # a request error: no data entry
        error = body["errors"][0]
        assert error["extensions"]["code"] == "DOCUMENT_TOO_LARGE" and f"{limit} bytes" in error["message"]
    assert (documents.DOCUMENTS.held_bytes, len(documents.DOCUMENTS)) == held


async def test_a_repeated_dashboard_is_parsed_and_validated_once(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    parse, validate_document = documents.parse, documents.validate_document

    def counted_parse(*args: Any, **kwargs: Any) -> Any:
        calls.append("parse")
        return parse(*args, **kwargs)

    def counted_validate(*args: Any, **kwargs: Any) -> Any:
        calls.append("validate")
        return validate_document(*args, **kwargs)

    monkeypatch.setattr(documents, "parse", counted_parse)
    monkeypatch.setattr(documents, "validate_document", counted_validate)
    query = DASHBOARD_QUERY + f"# {uuid.uuid4()}\n"  # a document no other test sent
    answers = [await api.data(query, {"id": str(300 + i % 2)}) for i in range(6)]
    assert calls == ["parse", "validate"] and answers[0] == answers[2] != answers[1]


async def test_a_request_parses_its_document_once_even_when_it_fails(
    secure: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = documents.parse

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(documents, "parse", counting)
    headers = secure.headers("affiliate", AFFILIATE)
    # A token-dense document past the token limit: the label, the cache plan and the schema
    # share one parse, and the same text again is not parsed at all (its error is remembered).
    dense = "query Dense" + uuid.uuid4().hex + " { me { " + "id " * 3000 + "} }"
    for expected in (1, 1):
        response = await secure.post(headers, dense)
        assert response.json()["errors"][0]["extensions"]["code"] == "TOO_MANY_TOKENS"
        assert len(calls) == expected
    # A valid cacheable document: one parse for its label, its plan and its execution.
    fresh = "query Fresh" + uuid.uuid4().hex + ' { affiliate(id: "301") { id } }'
    assert (await secure.post(headers, fresh)).status_code == 200
    assert len(calls) == 2


def test_a_remembered_syntax_error_holds_no_document_and_answers_the_same() -> None:
    broken = "{ me { id " + "x" * 50_000
    with pytest.raises(graphql.GraphQLError) as first:
        parsed_document(broken, 2000)
    with pytest.raises(graphql.GraphQLError) as again:
        parsed_document(broken, 2000)
    assert (again.value.message, again.value.locations) == (first.value.message, first.value.locations)
    assert all(broken not in str(kept) for kept in documents.FAILED_PARSES.values())
    assert all(len(str(kept)) < 1000 for kept in documents.FAILED_PARSES.values())
