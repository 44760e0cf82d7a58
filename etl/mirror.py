"""Mirror: fold the staged source rows into etl.src_*, record anomalies, capture changes.

After this step the temporary tables describe what changed in the cycle:
- ``changed_edge_users(user_id)``: users whose own referral edge may have changed (a tracked
  row changed, the user or its referrer arrived in cadastro);
- ``changed_user_days(user_id, day)``: (user, local day) pairs whose activity may have changed;
- ``changed_profiles(user_id)``: users whose cadastro row changed (name, flag, status...);
- ``changed_money_rows(kind, id, user_id, old_user_id, criado_em, old_criado_em)``: deposit
  and withdrawal rows that changed (with the values they had, to find what was written for
  them);
- ``changed_money_days(user_id, day)``: the (user, local day) pairs of those changed rows, as
  they are and as they were (incremental cycles; they are also in ``changed_user_days``);
- ``new_bet_days(user_id, day, stake, win, bet_count, first_bet_at)``: the bets this cycle
  added to the mirror, summed per user and local day (incremental cycles; the pairs are in
  ``changed_user_days``).
"""
from __future__ import annotations

from decimal import Decimal

import asyncpg

from etl.bulk import indexes_built_after, nested_loops
from etl.cycle import Cycle

_CHANGE_TABLES = """
CREATE TEMP TABLE changed_edge_users (user_id bigint PRIMARY KEY) ON COMMIT DROP;
CREATE TEMP TABLE changed_user_days (user_id bigint, day date, PRIMARY KEY (user_id, day))
    ON COMMIT DROP;
CREATE TEMP TABLE changed_profiles (user_id bigint PRIMARY KEY) ON COMMIT DROP;
CREATE TEMP TABLE changed_money_rows (kind text, id bigint, user_id bigint, old_user_id bigint,
                                      criado_em timestamptz, old_criado_em timestamptz)
    ON COMMIT DROP;
CREATE TEMP TABLE changed_money_days (user_id bigint, day date, PRIMARY KEY (user_id, day))
    ON COMMIT DROP;
CREATE TEMP TABLE new_bet_days (user_id bigint, day date, stake numeric, win numeric,
                                bet_count int, first_bet_at timestamptz, PRIMARY KEY (user_id, day))
    ON COMMIT DROP;
"""
_CHANGE_TABLE_NAMES = (
    "changed_edge_users", "changed_user_days", "changed_profiles", "changed_money_rows",
    "changed_money_days", "new_bet_days",
)

# Whether this cycle changed anything the later steps derive from (the idle check reads it).
ANYTHING_CHANGED = """
EXISTS (SELECT 1 FROM changed_edge_users) OR EXISTS (SELECT 1 FROM changed_user_days)
    OR EXISTS (SELECT 1 FROM changed_profiles) OR EXISTS (SELECT 1 FROM changed_money_rows)
"""

# Why each kind of bad source row is held back; the key is the anomaly's reason text.
_CADASTRO_ANOMALIES = """
INSERT INTO etl.anomalies (source_table, source_id, reason)
SELECT 'cadastro', s.id, r.reason
FROM staged_cadastro s,
LATERAL (VALUES
    (CASE WHEN s.status IS NULL OR s.status NOT IN ('ativo', 'inativo', 'suspenso')
          THEN 'unknown status (shown as inactive)' END),
    (CASE WHEN s.nome IS NULL THEN 'null nome' END),
    (CASE WHEN s.afiliado IS NULL THEN 'null afiliado (taken as false)' END),
    (CASE WHEN s.criado_em IS NULL OR s.atualizado_em IS NULL THEN 'null timestamp' END)
) AS r(reason)
WHERE s.id IS NOT NULL AND r.reason IS NOT NULL
ON CONFLICT DO NOTHING
"""

_TRACKED_ANOMALIES = """
INSERT INTO etl.anomalies (source_table, source_id, reason)
SELECT 'tracked', s.id, r.reason
FROM staged_tracked s,
LATERAL (VALUES
    (CASE WHEN s.user_id IS NULL OR s.afiliado_id IS NULL OR s.criado_em IS NULL
          THEN 'null field (skipped)' END),
    (CASE WHEN s.user_id = s.afiliado_id THEN 'self-referral (skipped)' END)
) AS r(reason)
WHERE s.id IS NOT NULL AND r.reason IS NOT NULL
ON CONFLICT DO NOTHING
"""

_MONEY_ANOMALIES = """
INSERT INTO etl.anomalies (source_table, source_id, reason)
SELECT '{table}', s.id, r.reason
FROM (SELECT * FROM staged_{table}
      WHERE NOT coalesce(user_id IS NOT NULL AND valor IS NOT NULL AND status IS NOT NULL
                         AND criado_em IS NOT NULL AND valor > 0 AND valor <= $1
                         AND status IN ('pendente', 'aprovado', 'cancelado'), false)) AS s,
LATERAL (VALUES
    (CASE WHEN s.user_id IS NULL OR s.valor IS NULL OR s.status IS NULL OR s.criado_em IS NULL
          THEN 'null field (skipped)' END),
    (CASE WHEN s.valor <= 0 THEN 'non-positive amount (skipped)' END),
    (CASE WHEN s.valor > $1 THEN 'absurd amount (skipped)' END),
    (CASE WHEN s.status NOT IN ('pendente', 'aprovado', 'cancelado')
          THEN 'unknown status (skipped)' END)
) AS r(reason)
WHERE s.id IS NOT NULL AND r.reason IS NOT NULL
ON CONFLICT DO NOTHING
"""

_BET_ANOMALIES = """
INSERT INTO etl.anomalies (source_table, source_id, reason)
SELECT 'casino_bets_v', s.id, r.reason
FROM (SELECT * FROM {bets}
      WHERE NOT coalesce(user_id IS NOT NULL AND valor_aposta IS NOT NULL
                         AND valor_premio IS NOT NULL AND criado_em IS NOT NULL
                         AND valor_aposta BETWEEN 0 AND $1 AND valor_premio BETWEEN 0 AND $1,
                         false)) AS s,
LATERAL (VALUES
    (CASE WHEN s.user_id IS NULL OR s.valor_aposta IS NULL OR s.valor_premio IS NULL
               OR s.criado_em IS NULL THEN 'null field (skipped)' END),
    (CASE WHEN s.valor_aposta < 0 OR s.valor_premio < 0 THEN 'negative amount (skipped)' END),
    (CASE WHEN s.valor_aposta > $1 OR s.valor_premio > $1 THEN 'absurd amount (skipped)' END)
) AS r(reason)
WHERE s.id IS NOT NULL AND r.reason IS NOT NULL
ON CONFLICT DO NOTHING
"""

# Staged rows whose user is not in cadastro (yet), among the users in {users}: every staged
# user on a full load; on an incremental one only the users of rows that were new or changed
# (a row re-read in the overlap window was checked when it first arrived, and an anomaly is
# never deleted, so checking it again could not add anything).
_ORPHAN_ANOMALIES = """
INSERT INTO etl.anomalies (source_table, source_id, reason)
SELECT '{table}', s.id, 'user not in cadastro yet (held)'
FROM staged_{table} s
JOIN (SELECT u.user_id
      FROM (SELECT DISTINCT user_id FROM {users} WHERE user_id IS NOT NULL) AS u
      WHERE NOT EXISTS (SELECT 1 FROM etl.src_cadastro c WHERE c.id = u.user_id)) AS o
  ON o.user_id = s.user_id
WHERE s.id IS NOT NULL
ON CONFLICT DO NOTHING
"""

# The users of this cycle's new or changed rows, per staged table (incremental cycles).
_CHANGED_USERS = {
    "depositos": "(SELECT user_id FROM changed_money_rows WHERE kind = 'depositos') AS changed",
    "saque": "(SELECT user_id FROM changed_money_rows WHERE kind = 'saque') AS changed",
    "casino_bets_v": "new_bet_days",
}

_MERGE_CADASTRO = """
WITH latest AS (
    SELECT DISTINCT ON (id) id, nome, email, telefone, afiliado, status, criado_em, atualizado_em
    FROM staged_cadastro WHERE id IS NOT NULL
    ORDER BY id, atualizado_em DESC NULLS LAST
), changed AS (
    SELECT s.*, m.id IS NOT NULL AS existed
    FROM latest s LEFT JOIN etl.src_cadastro m ON m.id = s.id
    WHERE m.id IS NULL
       OR ROW(s.nome, s.email, s.telefone, s.afiliado, s.status, s.criado_em, s.atualizado_em)
          IS DISTINCT FROM
          ROW(m.nome, m.email, m.telefone, m.afiliado, m.status, m.criado_em, m.atualizado_em)
), upserted AS (
    INSERT INTO etl.src_cadastro
        (id, nome, email, telefone, afiliado, status, criado_em, atualizado_em, ok)
    SELECT id, nome, email, telefone, afiliado, status, criado_em, atualizado_em, true
    FROM changed
    ON CONFLICT (id) DO UPDATE SET
        nome = EXCLUDED.nome, email = EXCLUDED.email, telefone = EXCLUDED.telefone,
        afiliado = EXCLUDED.afiliado, status = EXCLUDED.status, criado_em = EXCLUDED.criado_em,
        atualizado_em = EXCLUDED.atualizado_em
    RETURNING id
), profile AS (
    INSERT INTO changed_profiles SELECT id FROM upserted ON CONFLICT DO NOTHING
)
-- A user's arrival can make its own edge and its referrals' edges usable.
INSERT INTO changed_edge_users (user_id)
SELECT id FROM changed WHERE NOT existed
UNION
SELECT t.user_id FROM etl.src_tracked t JOIN changed c ON c.id = t.afiliado_id
WHERE NOT c.existed AND t.user_id IS NOT NULL
ON CONFLICT DO NOTHING
"""

_MERGE_TRACKED = """
WITH latest AS (
    SELECT DISTINCT ON (id) id, user_id, afiliado_id, criado_em, atualizado_em,
           (user_id IS NOT NULL AND afiliado_id IS NOT NULL AND criado_em IS NOT NULL
            AND user_id <> afiliado_id) AS ok
    FROM staged_tracked WHERE id IS NOT NULL
    ORDER BY id, atualizado_em DESC NULLS LAST
), changed AS (
    SELECT s.*, m.user_id AS old_user_id
    FROM latest s LEFT JOIN etl.src_tracked m ON m.id = s.id
    WHERE m.id IS NULL
       OR ROW(s.user_id, s.afiliado_id, s.criado_em, s.atualizado_em, s.ok)
          IS DISTINCT FROM ROW(m.user_id, m.afiliado_id, m.criado_em, m.atualizado_em, m.ok)
), upserted AS (
    INSERT INTO etl.src_tracked (id, user_id, afiliado_id, criado_em, atualizado_em, ok)
    SELECT id, user_id, afiliado_id, criado_em, atualizado_em, ok FROM changed
    ON CONFLICT (id) DO UPDATE SET
        user_id = EXCLUDED.user_id, afiliado_id = EXCLUDED.afiliado_id,
        criado_em = EXCLUDED.criado_em, atualizado_em = EXCLUDED.atualizado_em, ok = EXCLUDED.ok
)
INSERT INTO changed_edge_users (user_id)
SELECT user_id FROM changed WHERE user_id IS NOT NULL
UNION
SELECT old_user_id FROM changed WHERE old_user_id IS NOT NULL
ON CONFLICT DO NOTHING
"""

_MERGE_MONEY = """
WITH latest AS (
    SELECT DISTINCT ON (id) id, user_id, valor, status, criado_em, atualizado_em,
           (user_id IS NOT NULL AND valor IS NOT NULL AND status IS NOT NULL
            AND criado_em IS NOT NULL AND valor > 0 AND valor <= $1
            AND status IN ('pendente', 'aprovado', 'cancelado')) AS ok
    FROM staged_{table} WHERE id IS NOT NULL
    ORDER BY id, atualizado_em DESC NULLS LAST
), changed AS (
    SELECT s.*, m.id IS NOT NULL AS existed, m.user_id AS old_user_id,
           m.criado_em AS old_criado_em
    FROM latest s LEFT JOIN etl.src_{table} m ON m.id = s.id
    WHERE m.id IS NULL
       OR ROW(s.user_id, s.valor, s.status, s.criado_em, s.atualizado_em, s.ok)
          IS DISTINCT FROM ROW(m.user_id, m.valor, m.status, m.criado_em, m.atualizado_em, m.ok)
), upserted AS (
    INSERT INTO etl.src_{table} (id, user_id, valor, status, criado_em, atualizado_em, ok)
    SELECT id, user_id, valor, status, criado_em, atualizado_em, ok FROM changed
    ON CONFLICT (id) DO UPDATE SET
        user_id = EXCLUDED.user_id, valor = EXCLUDED.valor, status = EXCLUDED.status,
        criado_em = EXCLUDED.criado_em, atualizado_em = EXCLUDED.atualizado_em, ok = EXCLUDED.ok
), money AS (
    INSERT INTO changed_money_rows (kind, id, user_id, old_user_id, criado_em, old_criado_em)
    SELECT '{table}', id, user_id, old_user_id, criado_em, old_criado_em FROM changed
), days AS (
    INSERT INTO changed_money_days (user_id, day)
    SELECT user_id, criado_em::date FROM changed WHERE user_id IS NOT NULL AND criado_em IS NOT NULL
    UNION
    SELECT old_user_id, old_criado_em::date FROM changed
    WHERE existed AND old_user_id IS NOT NULL AND old_criado_em IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING user_id, day
)
INSERT INTO changed_user_days (user_id, day)
SELECT user_id, day FROM days
ON CONFLICT DO NOTHING
"""

# A full load of deposits or withdrawals: the mirror is empty, every row is new.
_LOAD_MONEY = """
INSERT INTO etl.src_{table} (id, user_id, valor, status, criado_em, atualizado_em, ok)
SELECT DISTINCT ON (id) id, user_id, valor, status, criado_em, atualizado_em,
       (user_id IS NOT NULL AND valor IS NOT NULL AND status IS NOT NULL
        AND criado_em IS NOT NULL AND valor > 0 AND valor <= $1
        AND status IN ('pendente', 'aprovado', 'cancelado'))
FROM staged_{table} WHERE id IS NOT NULL
ORDER BY id, atualizado_em DESC NULLS LAST
"""

# Bets are append-only: a new id is a new bet; an id already mirrored is the overlap.
_BETS_OK = """
    id IS NOT NULL AND user_id IS NOT NULL AND valor_aposta IS NOT NULL
      AND valor_premio IS NOT NULL AND criado_em IS NOT NULL
      AND valor_aposta >= 0 AND valor_premio >= 0 AND valor_aposta <= $1 AND valor_premio <= $1
"""

# The bets actually inserted are also summed per (user, local day) into ``new_bet_days``: the
# activity step adds them to the days they fall on instead of re-reading those days' bets.
_MERGE_BETS = f"""
WITH inserted AS (
    INSERT INTO etl.src_bets (id, user_id, valor_aposta, valor_premio, criado_em)
    SELECT id, user_id, valor_aposta, valor_premio, criado_em
    FROM staged_casino_bets_v
    WHERE {_BETS_OK}
    ON CONFLICT (id) DO NOTHING
    RETURNING user_id, criado_em, valor_aposta, valor_premio
), summed AS (
    INSERT INTO new_bet_days (user_id, day, stake, win, bet_count, first_bet_at)
    SELECT user_id, criado_em::date, sum(valor_aposta), sum(valor_premio), count(*), min(criado_em)
    FROM inserted GROUP BY 1, 2
    RETURNING user_id, day
)
INSERT INTO changed_user_days (user_id, day)
SELECT user_id, day FROM summed
ON CONFLICT DO NOTHING
"""

_COUNT_STAGED_ANOMALIES = """
SELECT (SELECT count(*) FROM etl.anomalies) - $1
"""


async def run(cycle: Cycle) -> None:
    """The pipeline step: fold the staged rows into the mirrors, leave the change tables."""
    max_amount = Decimal(cycle.settings.etl_max_amount)
    cycle.result.anomalies = await merge(cycle.conn, max_amount, full=cycle.full)


async def merge(conn: asyncpg.Connection, max_amount: Decimal, *, full: bool = False) -> int:
    """Fold staging into the mirrors; returns the number of new anomalies recorded."""
    await conn.execute(_CHANGE_TABLES)
    before = await conn.fetchval("SELECT count(*) FROM etl.anomalies")
    await conn.execute(_CADASTRO_ANOMALIES)
    await conn.execute(_TRACKED_ANOMALIES)
    for table in ("depositos", "saque"):
        await conn.execute(_MONEY_ANOMALIES.format(table=table), max_amount)
    # A full load copied the bets straight into their mirror (extract, ``direct``).
    bets = "etl.src_bets" if full else "staged_casino_bets_v"
    await conn.execute(_BET_ANOMALIES.format(bets=bets), max_amount)

    await conn.execute(_MERGE_CADASTRO)
    await conn.execute(_MERGE_TRACKED)
    if full:
        for table in ("depositos", "saque"):
            async with indexes_built_after(conn, f"etl.src_{table}"):
                await conn.execute(_LOAD_MONEY.format(table=table), max_amount)
        await _bulk_load_bets(conn, max_amount)
    else:
        async with nested_loops(conn):
            for table in ("depositos", "saque"):
                await conn.execute(_MERGE_MONEY.format(table=table), max_amount)
            await conn.execute(_MERGE_BETS, max_amount)

    # Orphans are checked after cadastro is merged: a user arriving in the same cycle is fine.
    # (On a full load the bets' orphans are found from the per-day activity instead:
    # record_orphan_bets, far cheaper than a distinct over millions of staged bets.)
    if full:
        for table in ("depositos", "saque"):
            await conn.execute(_ORPHAN_ANOMALIES.format(table=table, users=f"staged_{table}"))
    else:
        async with nested_loops(conn):  # the changed users probe cadastro by id
            for table, users in _CHANGED_USERS.items():
                await conn.execute(_ORPHAN_ANOMALIES.format(table=table, users=users))
    for table in _CHANGE_TABLE_NAMES:
        await conn.execute(f"ANALYZE {table}")
    return await conn.fetchval(_COUNT_STAGED_ANOMALIES, before)


async def prepare_bulk_bets(conn: asyncpg.Connection) -> None:
    """Full load, before extract: the emptied bets mirror takes the raw COPY (no indexes, no
    NOT NULL on id: a broken source row must not fail the COPY; _bulk_load_bets drops it)."""
    await conn.execute("ALTER TABLE etl.src_bets DROP CONSTRAINT src_bets_pkey")
    await conn.execute("DROP INDEX etl.src_bets_user")
    await conn.execute("ALTER TABLE etl.src_bets ALTER COLUMN id DROP NOT NULL")


async def _bulk_load_bets(conn: asyncpg.Connection, max_amount: Decimal) -> None:
    """Full load: drop the broken bets the COPY brought in (their anomalies are recorded),
    then build the mirror's indexes once, after the load."""
    await conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
    await conn.execute(f"DELETE FROM etl.src_bets WHERE NOT coalesce({_BETS_OK}, false)", max_amount)
    try:
        async with conn.transaction():  # a savepoint: duplicate source ids are possible
            await conn.execute("ALTER TABLE etl.src_bets ADD CONSTRAINT src_bets_pkey PRIMARY KEY (id)")
    except asyncpg.UniqueViolationError:
        await conn.execute(
            "DELETE FROM etl.src_bets a USING etl.src_bets b WHERE a.id = b.id AND a.ctid > b.ctid"
        )
        await conn.execute("ALTER TABLE etl.src_bets ADD CONSTRAINT src_bets_pkey PRIMARY KEY (id)")
    await conn.execute("CREATE INDEX src_bets_user ON etl.src_bets (user_id, criado_em)")


_ORPHAN_BETS_FROM_ACTIVITY = """
INSERT INTO etl.anomalies (source_table, source_id, reason)
SELECT 'casino_bets_v', b.id, 'user not in cadastro yet (held)'
FROM (SELECT DISTINCT user_id FROM etl.user_daily WHERE bet_count > 0) AS u
JOIN etl.src_bets b ON b.user_id = u.user_id
WHERE NOT EXISTS (SELECT 1 FROM etl.src_cadastro c WHERE c.id = u.user_id)
ON CONFLICT DO NOTHING
"""


async def record_orphan_bets(conn: asyncpg.Connection) -> int:
    """Full load only, after the activity step: bets of users not in cadastro (yet)."""
    status = await conn.execute(_ORPHAN_BETS_FROM_ACTIVITY)
    return int(status.split()[-1])
