"""Check an ETL-built robust database against the spec, computed independently at scale.

    .venv/bin/python -m bench.oracle [--base-url postgresql://postgres@127.0.0.1:5432]
                                     [--robust fature_bench_robust] [--operation fature_bench_operation]

Recomputes, straight from the operation database and METRICS.md (not from any ETL code or
table), every affiliate's five levels: the upline walk (usable edges only, the cycle guard,
the 5-level cut), |N_L(A)|, approved deposits, stakes, GGR, and the level REV as the sum of
the daily ``round(rate_L * GGR, 2)`` at the default plan's single version. Then compares them
with ``affiliate_mlm_structure`` value by value, the affiliate set with ``affiliates``, and
checks invariant 3 (daily summaries, level totals, ``affiliates``), the ledger's level sums,
and that ``affiliate_referrals`` and ``affiliate_financial_transactions`` add up, per
affiliate and level, to the level totals they detail.

It is a check of a database at rest: run it when no source rows arrived since the last ETL
cycle (e.g. right after ``bench.etl_bench``). It needs one plan version and no per-affiliate
plan (the seed's configuration); it exits non-zero on any difference.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import asyncpg

from db.settings import Settings

_ORACLE = """
SET work_mem = '512MB';
SELECT set_config('TimeZone', $tz$TZ$tz$, false);
CREATE TEMP TABLE o_edges AS
SELECT t.user_id, t.afiliado_id AS referrer FROM tracked t
WHERE t.user_id <> t.afiliado_id
  AND EXISTS (SELECT 1 FROM cadastro a WHERE a.id = t.user_id)
  AND EXISTS (SELECT 1 FROM cadastro b WHERE b.id = t.afiliado_id);
CREATE INDEX ON o_edges (user_id);
ANALYZE o_edges;

CREATE TEMP TABLE o_upline AS
WITH RECURSIVE walk(user_id, level, ancestor, path) AS (
    SELECT user_id, 1, referrer, ARRAY[user_id, referrer] FROM o_edges
    UNION ALL
    SELECT w.user_id, w.level + 1, e.referrer, w.path || e.referrer
    FROM walk w JOIN o_edges e ON e.user_id = w.ancestor
    WHERE w.level < 5 AND NOT e.referrer = ANY (w.path)
)
SELECT user_id, level, ancestor FROM walk;

CREATE TEMP TABLE o_money AS
SELECT user_id, sum(valor) AS deposits FROM depositos
WHERE status = 'aprovado' AND valor <= MAXAMOUNT GROUP BY user_id;

CREATE TEMP TABLE o_bets AS
SELECT user_id, criado_em::date AS day, sum(valor_aposta) AS stake,
       sum(valor_aposta - valor_premio) AS ggr
FROM casino_bets_v
WHERE valor_aposta BETWEEN 0 AND MAXAMOUNT AND valor_premio BETWEEN 0 AND MAXAMOUNT
GROUP BY 1, 2;
"""

_LEVELS = """
WITH counts AS (
    SELECT u.ancestor, u.level, count(*) AS n, coalesce(sum(m.deposits), 0) AS deposits
    FROM o_upline u LEFT JOIN o_money m USING (user_id) GROUP BY 1, 2
), daily AS (
    SELECT u.ancestor, u.level, b.day, sum(b.stake) AS stake, sum(b.ggr) AS ggr
    FROM o_upline u JOIN o_bets b USING (user_id) GROUP BY 1, 2, 3
), play AS (
    SELECT ancestor, level, sum(stake) AS stake, sum(ggr) AS ggr,
           sum(round(($1::numeric[])[level] * ggr, 2)) AS rev
    FROM daily GROUP BY 1, 2
)
SELECT c.ancestor, c.level, c.n, c.deposits, coalesce(p.stake, 0) AS stake,
       coalesce(p.ggr, 0) AS ggr, coalesce(p.rev, 0) AS rev
FROM counts c LEFT JOIN play p USING (ancestor, level)
"""

_INVARIANT_3 = """
SELECT
  (SELECT count(*) FROM affiliates a JOIN affiliate_mlm_structure m USING (affiliate_id)
   WHERE a.total_referrals <> m.level_1_count
      OR a.total_deposits <> m.level_1_deposits + m.level_2_deposits + m.level_3_deposits + m.level_4_deposits + m.level_5_deposits
      OR a.total_bets <> m.level_1_bets + m.level_2_bets + m.level_3_bets + m.level_4_bets + m.level_5_bets
      OR a.total_ggr <> m.level_1_ggr + m.level_2_ggr + m.level_3_ggr + m.level_4_ggr + m.level_5_ggr
      OR a.total_cpa_earned <> m.level_1_cpa + m.level_2_cpa + m.level_3_cpa + m.level_4_cpa + m.level_5_cpa
      OR a.total_rev_earned <> m.level_1_rev + m.level_2_rev + m.level_3_rev + m.level_4_rev + m.level_5_rev)
  AS affiliates_vs_levels,
  (SELECT count(*) FROM affiliates a
   LEFT JOIN (SELECT affiliate_id, period_type, sum(total_deposits) AS d, sum(total_bets) AS b,
                     sum(total_ggr) AS g, sum(cpa_earned) AS c, sum(rev_earned) AS r,
                     sum(new_referrals) AS n
              FROM affiliate_periodic_summaries GROUP BY 1, 2) s
     ON s.affiliate_id = a.affiliate_id
   WHERE ROW(coalesce(s.d, 0), coalesce(s.b, 0), coalesce(s.g, 0), coalesce(s.c, 0), coalesce(s.r, 0),
             coalesce(s.n, 0))
         IS DISTINCT FROM ROW(a.total_deposits, a.total_bets, a.total_ggr, a.total_cpa_earned,
                              a.total_rev_earned, a.total_referrals::numeric))
  AS summaries_vs_affiliates,
  (SELECT count(*) FROM (SELECT affiliate_id, cpa_level, sum(cpa_amount) AS s
                         FROM affiliate_cpa_validations GROUP BY 1, 2) v
   JOIN affiliate_mlm_structure m USING (affiliate_id)
   WHERE v.s <> (ARRAY[m.level_1_cpa, m.level_2_cpa, m.level_3_cpa, m.level_4_cpa, m.level_5_cpa])[v.cpa_level])
  AS ledger_vs_levels
"""


# The referral rows and the transaction rows, summed per (affiliate, level), against the
# level totals they detail.
_DETAIL_TABLES = """
WITH refs AS (
    SELECT referrer_id AS affiliate_id, mlm_level AS level, count(*) AS n,
           sum(total_deposits) AS deposits, sum(total_bets) AS bets, sum(cpa_amount) AS cpa
    FROM affiliate_referrals GROUP BY 1, 2
), moves AS (
    SELECT affiliate_id, mlm_level AS level,
           coalesce(sum(amount) FILTER (WHERE transaction_type = 'deposit'), 0) AS deposits,
           coalesce(sum(amount) FILTER (WHERE transaction_type = 'bet'), 0) AS bets,
           coalesce(sum(amount) FILTER (WHERE transaction_type = 'bet'), 0)
           - coalesce(sum(amount) FILTER (WHERE transaction_type = 'win'), 0) AS ggr,
           coalesce(sum(amount) FILTER (WHERE transaction_type = 'cpa'), 0) AS cpa,
           coalesce(sum(amount) FILTER (WHERE transaction_type = 'rev'), 0) AS rev
    FROM affiliate_financial_transactions GROUP BY 1, 2
), levels AS (
    SELECT m.affiliate_id, l.level,
           (ARRAY[level_1_count, level_2_count, level_3_count, level_4_count, level_5_count])[l.level] AS n,
           (ARRAY[level_1_deposits, level_2_deposits, level_3_deposits, level_4_deposits, level_5_deposits])[l.level] AS deposits,
           (ARRAY[level_1_bets, level_2_bets, level_3_bets, level_4_bets, level_5_bets])[l.level] AS bets,
           (ARRAY[level_1_ggr, level_2_ggr, level_3_ggr, level_4_ggr, level_5_ggr])[l.level] AS ggr,
           (ARRAY[level_1_cpa, level_2_cpa, level_3_cpa, level_4_cpa, level_5_cpa])[l.level] AS cpa,
           (ARRAY[level_1_rev, level_2_rev, level_3_rev, level_4_rev, level_5_rev])[l.level] AS rev
    FROM affiliate_mlm_structure m CROSS JOIN generate_series(1, 5) AS l(level)
)
SELECT
  count(*) FILTER (WHERE ROW(coalesce(r.n, 0), coalesce(r.deposits, 0), coalesce(r.bets, 0), coalesce(r.cpa, 0))
                   IS DISTINCT FROM ROW(l.n, l.deposits, l.bets, l.cpa)) AS referrals_vs_levels,
  count(*) FILTER (WHERE ROW(coalesce(t.deposits, 0), coalesce(t.bets, 0), coalesce(t.ggr, 0),
                             coalesce(t.cpa, 0), coalesce(t.rev, 0))
                   IS DISTINCT FROM ROW(l.deposits, l.bets, l.ggr, l.cpa, l.rev)) AS transactions_vs_levels
FROM levels l
LEFT JOIN refs r USING (affiliate_id, level)
LEFT JOIN moves t USING (affiliate_id, level)
"""


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--robust", default="fature_bench_robust")
    parser.add_argument("--operation", default="fature_bench_operation")
    args = parser.parse_args()
    settings = Settings(_env_file=None)
    robust = await asyncpg.connect(f"{args.base_url}/{args.robust}")
    operation = await asyncpg.connect(f"{args.base_url}/{args.operation}")
    try:
        versions = await robust.fetch("SELECT * FROM commission_plan_versions")
        if len(versions) != 1 or await robust.fetchval("SELECT count(*) FROM affiliate_plan_history"):
            print("the oracle needs exactly one plan version and no per-affiliate plan")
            return 2
        rates = [versions[0][f"rev_share_level_{n}"] for n in range(1, 6)]

        started = time.perf_counter()
        setup = _ORACLE.replace("$tz$TZ$tz$", f"'{settings.timezone}'").replace(
            "MAXAMOUNT", str(settings.etl_max_amount)
        )
        await operation.execute(setup)
        want = {
            (r["ancestor"], r["level"]): (r["n"], r["deposits"], r["stake"], r["ggr"], r["rev"])
            for r in await operation.fetch(_LEVELS, rates)
        }
        print(f"oracle: {len(want):,} (affiliate, level) pairs from the source in "
              f"{time.perf_counter() - started:.1f} s")

        got = {}
        for r in await robust.fetch("SELECT * FROM affiliate_mlm_structure"):
            for n in range(1, 6):
                value = tuple(r[f"level_{n}_{k}"] for k in ("count", "deposits", "bets", "ggr", "rev"))
                if value != (0, 0, 0, 0, 0):
                    got[(r["affiliate_id"], n)] = value
        keys = set(want) | set(got)
        wrong = sorted(k for k in keys if want.get(k) != got.get(k))
        print(f"levels: {len(keys):,} pairs compared (count, deposits, bets, ggr, rev), "
              f"{len(wrong)} differ")
        for key in wrong[:10]:
            print(f"  {key}: spec {want.get(key)} robust {got.get(key)}")

        affiliates = {r[0] for r in await operation.fetch(
            "SELECT id FROM cadastro WHERE afiliado UNION SELECT referrer FROM o_edges"
        )}
        ledger_holders = {r[0] for r in await robust.fetch(
            "SELECT DISTINCT affiliate_id FROM affiliate_cpa_validations"
        )}
        stored = {r[0] for r in await robust.fetch("SELECT affiliate_id FROM affiliates")}
        expected = affiliates | ledger_holders
        print(f"affiliate set: {len(expected):,} by the spec, {len(stored):,} stored, "
              f"{len(expected ^ stored)} differ")

        inv = await robust.fetchrow(_INVARIANT_3)
        print(f"invariant 3 and the ledger: {dict(inv)} (all must be 0)")
        detail = await robust.fetchrow(_DETAIL_TABLES)
        print(f"(affiliate, level) pairs whose referral or transaction rows do not add up to the "
              f"level totals: {dict(detail)} (all must be 0)")
        failed = bool(wrong) or expected != stored or any(inv.values()) or any(detail.values())
        print("FAILED" if failed else "OK: the robust database matches the spec's figures")
        return 1 if failed else 0
    finally:
        await robust.close()
        await operation.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
