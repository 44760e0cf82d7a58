"""Every open statement of the shared deployment (March and April 2025 open, April chained on
March) adds up: its lines give its figures, its figures its payable
(tests/commissions/statement_checks.py; the closed ones are checked where the tests close)."""

from __future__ import annotations

import pytest

from tests.commissions.statement_checks import MONTH, assert_adds_up
from tests.support.deployment import Api


@pytest.mark.parametrize("month", ["2025-03-01", "2025-04-01"])
async def test_every_open_statement_adds_up(api: Api, month: str) -> None:
    found = (await api.data(MONTH, {"m": month}))["statements"]
    assert len(found) >= 6
    for s in found:
        assert_adds_up(s)
