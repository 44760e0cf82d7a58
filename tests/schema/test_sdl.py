"""schema.graphql is the exported SDL of the code; the contract's names are in it."""

from __future__ import annotations

from schema.root import SDL_PATH, sdl


def test_schema_graphql_matches_the_code() -> None:
    assert SDL_PATH.read_text(encoding="utf-8") == sdl(), (
        "schema.graphql drifted from the code: run `.venv/bin/python -m schema.root` and commit it"
    )


def test_contract_names() -> None:
    text = sdl()
    for fragment in (
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
    ):
        assert fragment in text, fragment
