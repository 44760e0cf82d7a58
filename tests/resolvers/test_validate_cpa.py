"""Mutation.validateCpa: calls the ETL's validation code and returns what it wrote."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from etl.sync import EtlBusy, run_cycle
from resolvers import validation as validation_resolvers
from tests.support.deployment import JWT_SECRET, PLAIN, Api, Deployment, rows, serve
from tests.support.factories import Operation

MUTATION = """mutation($id: ID!) { validateCpa(affiliateId: $id) { affiliateId
  validations { id: validationId affiliateId referredUserId cpaLevel cpaAmount validationDate affiliate { name } } } }"""


def fake_module(monkeypatch: pytest.MonkeyPatch, impl: object) -> None:
    monkeypatch.setattr(validation_resolvers, "validate_affiliate_network", impl)


async def test_returns_the_validations_written(api: Api, deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = await rows(deployment.robust_url, "SELECT id FROM affiliate_cpa_validations WHERE affiliate_id = 300 "
                                           "ORDER BY id LIMIT 2")
    calls = []

    async def validate(robust_url: str, affiliate_id: int, settings: object) -> list[int]:
        calls.append((robust_url, affiliate_id, settings))
        return [r[0] for r in ledger]

    fake_module(monkeypatch, validate)
    result = (await api.data(MUTATION, {"id": "300"}))["validateCpa"]
    assert calls == [(deployment.robust_url, 300, deployment.settings)]
    assert result["affiliateId"] == "300"
    assert [int(v["id"]) for v in result["validations"]] == [r[0] for r in ledger]
    assert {v["affiliate"]["name"] for v in result["validations"]} == {"Bia Raiz"}

    rest = await api.client.post("/api/v1/affiliates/300/validate-cpa")
    assert rest.status_code == 200
    assert [v["id"] for v in rest.json()["validations"]] == [v["id"] for v in result["validations"]]


async def test_busy_and_missing(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def busy(*args: object) -> list[int]:
        raise EtlBusy("another ETL cycle is running; this one was skipped")

    fake_module(monkeypatch, busy)
    error = await api.error(MUTATION, {"id": "300"})
    assert error["extensions"]["code"] == "BUSY"
    assert (await api.client.post("/api/v1/affiliates/300/validate-cpa")).status_code == 409


async def test_real_validation_of_a_newly_qualified_user(settings, robust_url: str, operation_url: str) -> None:
    op = await Operation.open(operation_url)
    await op.user(101, "Ana", afiliado=True)
    await op.user(102, "Bruno")
    await op.track(102, 101, "2025-03-02 10:00Z")
    await op.deposit(102, "50.00", "2025-03-02 11:00Z")
    await op.bet(102, "80.00", "0.00", "2025-03-02 12:00Z")
    assert (await run_cycle(settings, robust_url, operation_url)).status == "success"
    await op.bet(102, "30.00", "45.00", "2025-03-04 02:30Z")  # 102 qualifies now
    await op.close()
    settings = settings.model_copy(update={"jwt_secret": SecretStr(JWT_SECRET), **PLAIN})
    async with serve(Deployment(robust_url, operation_url, settings)) as api:
        result = (await api.data(MUTATION, {"id": "101"}))["validateCpa"]
    assert [(v["affiliateId"], v["referredUserId"], v["cpaLevel"], v["cpaAmount"])
            for v in result["validations"]] == [("101", "102", 1, "50.00")]
    assert result["validations"][0]["validationDate"] == "2025-03-04T02:30:00+00:00"
