"""schema.graphql is the exported SDL of the code; the contract's names are in it."""

from __future__ import annotations

import re

from schema.root import SDL_PATH, sdl


def test_schema_graphql_matches_the_code() -> None:
    assert SDL_PATH.read_text(encoding="utf-8") == sdl(), (
        "schema.graphql drifted from the code: run `.venv/bin/python -m schema.root` and commit it"
    )


def _signatures(text: str) -> str:
    """The SDL without its descriptions, whitespace and commas collapsed: what the contract's
    names and types look like whatever the printer's line breaks."""
    text = re.sub(r'"""[\s\S]*?"""', " ", text)
    text = re.sub(r"[\s,]+", " ", text)
    return re.sub(r"\( ", "(", re.sub(r" \)", ")", text))


def test_contract_names() -> None:
    text = _signatures(sdl())
    for fragment in map(_signatures, (
        "affiliate(id: ID!): Affiliate\n",
        "affiliates(first: Int = 20, after: String = null, filter: AffiliateFilter = null, "
        "orderBy: AffiliateOrder = null): AffiliateConnection!",
        "ranking(metric: RankingMetric! = CPA_EARNED, first: Int = 20, after: String = null): "
        "AffiliateConnection!",
        "syncStatus: SyncStatus!",
        "validateCpa(affiliateId: ID!): ValidateCpaResult!",
        "summaries(\n    period: PeriodType!\n    from: Date = null\n    to: Date = null",
        "scalar Decimal", "scalar Date\n", "scalar DateTime",
        "type PageInfo {\n  hasNextPage: Boolean!",
        "interface Node {\n  id: ID!\n}", "type Affiliate implements Node {",
        "node(id: ID!): Node\n", "nodes(ids: [ID!]!): [Node]!",
    )):
        assert fragment in text, fragment
