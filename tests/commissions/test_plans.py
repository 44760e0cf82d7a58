"""Commission plans: reads, admin mutations, input validation naming the field, terms from the
start of a local day (tomorrow at the earliest), assignments with an effective date, the audit
log; and the what-if simulation."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import pytest

from commissions.months import local_today
from tests.support.deployment import rows
from tests.support.program import Program

TERMS = {"cpaByLevel": ["60.00", "20", "10", "5", "5"], "revShareByLevel": ["0.3", "0.1", "0.05", "0.03", "0.02"],
         "negativeCarryover": False, "minPayout": "100.00"}
CREATE = """mutation C($n: String!, $t: CommissionPlanTermsInput!) {
  createCommissionPlan(name: $n, terms: $t) { id: planId name isDefault versions { effectiveFrom cpaByLevel minPayout } } }"""
SCHEDULE = """mutation S($p: ID!, $d: Date!, $t: CommissionPlanTermsInput!) {
  scheduleCommissionPlanVersion(planId: $p, effectiveFrom: $d, terms: $t) { id effectiveFrom revShareByLevel } }"""
ASSIGN = "mutation A($a: ID!, $p: ID!) { assignCommissionPlan(affiliateId: $a, planId: $p) { planId effectiveFrom } }"
ASSIGN_FROM = """mutation A($a: ID!, $p: ID!, $d: Date) {
  assignCommissionPlan(affiliateId: $a, planId: $p, effectiveFrom: $d) { planId effectiveFrom } }"""


def today(program: Program) -> date:
    return local_today(program.deployment.settings.timezone)


async def test_default_plan_holds_the_spec_defaults(program: Program) -> None:
    plans = (await program.data("{ commissionPlans { id name isDefault currentVersion { cpaByLevel "
                                "revShareByLevel negativeCarryover minPayout } } }"))["commissionPlans"]
    assert plans[0]["isDefault"] and plans[0]["currentVersion"] == {
        "cpaByLevel": ["50.00", "20.00", "10.00", "5.00", "5.00"],
        "revShareByLevel": ["0.250000", "0.100000", "0.050000", "0.030000", "0.020000"],
        "negativeCarryover": True, "minPayout": "300.00"}
    err = await program.error("{ commissionPlans { id } }", role="affiliate", affiliate_id=1)
    assert err["extensions"]["code"] == "FORBIDDEN"
    mine = await program.data('{ commissionPlan(id: "1") { id: planId } }', role="affiliate", affiliate_id=1)
    assert mine["commissionPlan"] == {"id": "1"}


async def test_create_schedule_assign_and_audit(program: Program) -> None:
    plan = (await program.data(CREATE, {"n": "VIP", "t": TERMS}))["createCommissionPlan"]
    assert plan["versions"] == [{"effectiveFrom": "1900-01-01", "cpaByLevel": ["60.00", "20.00", "10.00", "5.00", "5.00"],
                                 "minPayout": "100.00"}]
    day = today(program)
    tomorrow = (day + timedelta(days=1)).isoformat()
    version = (await program.data(SCHEDULE, {"p": plan["id"], "d": tomorrow, "t": TERMS}))[
        "scheduleCommissionPlanVersion"]
    assert version["effectiveFrom"] == tomorrow
    # a scheduled version may be replaced until its day; today is refused: terms start on a
    # local day after the change, so a day is priced by the terms in force when it began
    await program.data(SCHEDULE, {"p": plan["id"], "d": tomorrow, "t": {**TERMS, "minPayout": "50"}})
    err = await program.error(SCHEDULE, {"p": plan["id"], "d": day.isoformat(), "t": TERMS})
    assert err["message"].startswith(f"effectiveFrom must be tomorrow ({tomorrow}) or later"), err["message"]
    assert f"today is {day.isoformat()} in America/Sao_Paulo" in err["message"]

    assigned = (await program.data(ASSIGN, {"a": "1", "p": plan["id"]}))["assignCommissionPlan"]
    assert assigned == {"planId": plan["id"], "effectiveFrom": tomorrow}  # tomorrow by default
    later = (day + timedelta(days=10)).isoformat()
    scheduled = (await program.data(ASSIGN_FROM, {"a": "2", "p": plan["id"], "d": later}))["assignCommissionPlan"]
    assert scheduled == {"planId": plan["id"], "effectiveFrom": later}
    err = await program.error(ASSIGN_FROM, {"a": "2", "p": "1", "d": day.isoformat()})
    assert err["extensions"]["code"] == "BAD_USER_INPUT" and err["message"].startswith("effectiveFrom must be tomorrow")
    history = await rows(program.deployment.robust_url,
                         "SELECT affiliate_id, effective_from, plan_id FROM affiliate_plan_history "
                         "ORDER BY affiliate_id, effective_from")
    assert [(r["affiliate_id"], r["effective_from"], r["plan_id"]) for r in history] == [
        (1, date(1900, 1, 1), 1), (1, day + timedelta(days=1), int(plan["id"])),
        (2, date(1900, 1, 1), 1), (2, day + timedelta(days=10), int(plan["id"]))]
    # Queued for the ETL: each change once, from its day; the "since always" rows change no
    # price and are not queued (the next cycle does not re-rate the affiliates' whole history).
    queued = await rows(program.deployment.robust_url,
                        "SELECT kind, effective_from, affiliate_id FROM etl.config_changes ORDER BY id")
    assert [tuple(r) for r in queued] == [
        ("plan_version", date(1900, 1, 1), None),  # the new plan's first version
        ("plan_version", day + timedelta(days=1), None),
        ("plan_version", day + timedelta(days=1), None),  # the replacement: its delete and insert
        ("plan_version", day + timedelta(days=1), None),
        ("plan_assignment", day + timedelta(days=1), 1),
        ("plan_assignment", day + timedelta(days=10), 2)]
    # the past stays on the old plan: March 2025's open statement still settles under plan 1
    march = await program.data('{ statement(id: "1:2025-03") { planId minPayout } }')
    assert march["statement"] == {"planId": "1", "minPayout": "300.00"}

    log = (await program.data("{ commissionAuditLog { action entity entityId before after } }"))["commissionAuditLog"]
    assert [e["action"] for e in log] == ["assignCommissionPlan", "assignCommissionPlan",
                                         "scheduleCommissionPlanVersion", "scheduleCommissionPlanVersion",
                                         "createCommissionPlan"]
    assert log[0]["before"] == {"plan_id": 1} and log[0]["after"] == {"plan_id": int(plan["id"]),
                                                                     "effective_from": later}
    assert log[2]["before"]["min_payout"] == "100.00" and log[2]["after"]["min_payout"] == "50.00"
    denied = await program.error("{ commissionAuditLog { id } }", role="analyst")
    assert denied["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(("terms", "field"), [
    ({**TERMS, "cpaByLevel": ["1", "2", "3", "4"]}, "terms.cpaByLevel must have exactly five levels"),
    ({**TERMS, "revShareByLevel": ["0.1"] * 6}, "terms.revShareByLevel must have exactly five levels"),
    ({**TERMS, "cpaByLevel": ["1", "2", "-3", "4", "5"]}, "terms.cpaByLevel[3] must be >= 0"),
    ({**TERMS, "cpaByLevel": ["1", "2", "3", "4", "5.001"]}, "terms.cpaByLevel[5] must be an amount"),
    ({**TERMS, "revShareByLevel": ["0.1", "1.5", "0", "0", "0"]}, "terms.revShareByLevel[2] must be between 0 and 1"),
    ({**TERMS, "revShareByLevel": ["-0.1", "0", "0", "0", "0"]}, "terms.revShareByLevel[1] must be between 0 and 1"),
    ({**TERMS, "minPayout": "-1"}, "terms.minPayout must be >= 0"),
])
async def test_every_input_is_validated_naming_the_field(program: Program, terms: dict, field: str) -> None:
    err = await program.error(CREATE, {"n": "Bad", "t": terms})
    assert err["extensions"]["code"] == "BAD_USER_INPUT" and err["message"].startswith(field), err["message"]
    err = await program.error(SCHEDULE, {"p": "1", "d": "2999-01-01", "t": terms})
    assert err["message"].startswith(field)


async def test_other_bad_inputs(program: Program) -> None:
    yesterday = (today(program) - timedelta(days=1)).isoformat()
    err = await program.error(SCHEDULE, {"p": "1", "d": yesterday, "t": TERMS})
    assert err["message"].startswith("effectiveFrom must be tomorrow")
    assert (await program.error(SCHEDULE, {"p": "999", "d": "2999-01-01", "t": TERMS}))["message"].startswith("planId")
    assert (await program.error(ASSIGN, {"a": "424242", "p": "1"}))["message"].startswith("affiliateId")
    assert (await program.error(ASSIGN, {"a": "1", "p": "77"}))["message"].startswith("planId")
    crit = """mutation Q($d: Date!, $c: QualificationCriteriaInput!) {
      scheduleQualificationCriteria(effectiveFrom: $d, criteria: $c) { effectiveFrom minStake } }"""
    ok = {"minDeposits": "30", "minStake": "100", "minActiveDays": 2}
    for bad, field in (({**ok, "minDeposits": "-1"}, "criteria.minDeposits"), ({**ok, "minStake": "-5"}, "criteria.minStake"),
                       ({**ok, "minActiveDays": -1}, "criteria.minActiveDays"), ({**ok, "windowDays": 0}, "criteria.windowDays")):
        assert (await program.error(crit, {"d": "2999-01-01", "c": bad}))["message"].startswith(field)
    assert (await program.data(crit, {"d": "2999-01-01", "c": ok}))["scheduleQualificationCriteria"]["minStake"] == "100.00"
    denied = await program.error(CREATE, {"n": "X", "t": TERMS}, role="affiliate", affiliate_id=1)
    assert denied["extensions"]["code"] == "FORBIDDEN"
    assert (await program.error(CREATE, {"n": "default", "t": TERMS}))["message"].startswith("name")


SIMULATE = """query W($t: CommissionPlanTermsInput!) { simulateCommissionPlan(terms: $t, month: "2025-03-01") {
  affiliateCount difference actual { cpa rev total } simulated { cpa rev total }
  affiliates { affiliateId difference actual { cpa rev total } simulated { cpa rev total } } } }"""


async def test_simulation_against_what_was_earned(program: Program) -> None:
    same = {**TERMS, "cpaByLevel": ["50", "20", "10", "5", "5"], "revShareByLevel": ["0.25", "0.1", "0.05", "0.03", "0.02"]}
    result = (await program.data(SIMULATE, {"t": same}))["simulateCommissionPlan"]
    assert result["affiliateCount"] == 2 and D(result["difference"]) == 0
    assert result["actual"] == {"cpa": "400.00", "rev": "120.00", "total": "520.00"}
    richer = (await program.data(SIMULATE, {"t": TERMS}))["simulateCommissionPlan"]
    # CPA level 1: 60 instead of 50 for 8 validations; REV 30% of 480 GGR instead of 25%
    assert richer["simulated"] == {"cpa": "480.00", "rev": "144.00", "total": "624.00"}
    assert D(richer["difference"]) == D("104.00")
    by_id = {a["affiliateId"]: a for a in richer["affiliates"]}
    assert by_id["2"]["simulated"] == {"cpa": "60.00", "rev": "18.00", "total": "78.00"}
    assert by_id["2"]["actual"]["total"] == "65.00"
    err = await program.error(SIMULATE, {"t": TERMS}, role="affiliate", affiliate_id=1)
    assert err["extensions"]["code"] == "FORBIDDEN"


PAGE = """query W($t: CommissionPlanTermsInput!, $m: Date!, $first: Int!, $after: ID) {
  simulateCommissionPlan(terms: $t, month: $m, first: $first, after: $after) {
    affiliateCount difference actual { cpa rev total } simulated { cpa rev total }
    affiliates { affiliateId difference actual { cpa rev total } simulated { cpa rev total } } } }"""


async def test_simulation_pages_keep_the_totals_and_money_has_cents(program: Program) -> None:
    async def page(month: str, first: int, after: str | None = None) -> dict:
        return (await program.data(PAGE, {"t": TERMS, "m": month, "first": first, "after": after}))[
            "simulateCommissionPlan"]

    full = await page("2025-03-01", 100)
    pages = [await page("2025-03-01", 1), await page("2025-03-01", 1, "1"), await page("2025-03-01", 1, "2")]
    assert [p["affiliates"] for p in pages] == [full["affiliates"][:1], full["affiliates"][1:], []]
    totals = {k: v for k, v in full.items() if k != "affiliates"}
    assert all({k: v for k, v in p.items() if k != "affiliates"} == totals for p in pages)
    assert (await page("2025-03-01", 0))["affiliates"] == []
    # April: affiliate 1 has REV only (-200.00): its CPA is 0.00 (money has cents), not 0
    april = await page("2025-04-01", 100)
    assert april["affiliates"][0]["actual"] == {"cpa": "0.00", "rev": "-200.00", "total": "-200.00"}
    assert april["affiliates"][0]["simulated"] == {"cpa": "0.00", "rev": "-240.00", "total": "-240.00"}
    empty = await page("2024-01-01", 100)
    assert empty["affiliateCount"] == 0 and empty["actual"] == {"cpa": "0.00", "rev": "0.00", "total": "0.00"}
    err = await program.error(PAGE, {"t": TERMS, "m": "2025-03-01", "first": 1, "after": "x"})
    assert err["extensions"]["code"] == "BAD_USER_INPUT" and err["message"].startswith("after")
