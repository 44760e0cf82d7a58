"""Network: usable referral edges and each user's upline p1..p5 (METRICS.md, "the network").

An edge is a tracked row whose user and referrer are both in cadastro and differ. The upline
walk follows edges up to five levels and stops at a user with no usable edge, or at one that
is the user itself or already on the walk, so a cycle in bad data never loops.

After ``rebuild`` the temporary tables say who moved:
- ``moved_users(user_id)``: users whose upline set or referral date changed; all their
  history moves with them;
- ``upline_before(user_id, level, ancestor_id)``: their upline before the change;
- ``referral_dates_before(user_id, referred_at)``: their referral date before the change;
- ``edges_before(user_id, referrer_id, referred_at)``: the edges of ``changed_edge_users``
  before the change.
Its own working tables: ``upline_candidates`` (incremental cycles: everyone whose walk can pass
through a changed edge) and ``upline_after`` (their walks now).
"""

from __future__ import annotations

import asyncpg

from etl.bulk import indexes_built_after
from etl.cycle import Cycle

_REBUILD_EDGES = """
CREATE TEMP TABLE edges_before ON COMMIT DROP AS
SELECT e.* FROM etl.edges e JOIN changed_edge_users r USING (user_id);

DELETE FROM etl.edges e USING changed_edge_users r WHERE e.user_id = r.user_id;

INSERT INTO etl.edges (user_id, referrer_id, referred_at)
SELECT DISTINCT ON (t.user_id) t.user_id, t.afiliado_id, t.criado_em
FROM etl.src_tracked t
JOIN changed_edge_users r ON r.user_id = t.user_id
WHERE t.ok
  AND EXISTS (SELECT 1 FROM etl.src_cadastro c WHERE c.id = t.user_id)
  AND EXISTS (SELECT 1 FROM etl.src_cadastro c WHERE c.id = t.afiliado_id)
ORDER BY t.user_id, t.atualizado_em DESC NULLS LAST, t.id DESC;
"""

# Edges not usable yet: held until the missing user arrives (recorded once).
_HELD_EDGES = """
INSERT INTO etl.anomalies (source_table, source_id, reason)
SELECT 'tracked', t.id,
       CASE WHEN NOT EXISTS (SELECT 1 FROM etl.src_cadastro c WHERE c.id = t.afiliado_id)
            THEN 'referrer not in cadastro yet (held)'
            ELSE 'referred user not in cadastro yet (held)' END
FROM etl.src_tracked t
JOIN changed_edge_users r ON r.user_id = t.user_id
WHERE t.ok AND NOT EXISTS (SELECT 1 FROM etl.edges e WHERE e.user_id = t.user_id)
ON CONFLICT DO NOTHING
"""

# Everyone whose walk can pass through a changed edge: the roots and four levels below.
_CANDIDATES = """
CREATE TEMP TABLE upline_candidates ON COMMIT DROP AS
WITH RECURSIVE below(user_id, depth) AS (
    SELECT user_id, 0 FROM changed_edge_users
    UNION
    SELECT e.user_id, b.depth + 1
    FROM below b JOIN etl.edges e ON e.referrer_id = b.user_id
    WHERE b.depth < 4
)
SELECT DISTINCT user_id FROM below;
ANALYZE upline_candidates;
"""

_WALK = """
CREATE TEMP TABLE upline_after ON COMMIT DROP AS
WITH RECURSIVE walk(user_id, level, ancestor_id, path) AS (
    SELECT e.user_id, 1, e.referrer_id, ARRAY[e.user_id, e.referrer_id]
    FROM {start} s JOIN etl.edges e ON e.user_id = s.user_id
    UNION ALL
    SELECT w.user_id, w.level + 1, e.referrer_id, w.path || e.referrer_id
    FROM walk w JOIN etl.edges e ON e.user_id = w.ancestor_id
    WHERE w.level < 5 AND e.referrer_id <> ALL (w.path)
)
SELECT user_id, level::smallint AS level, ancestor_id FROM walk;
"""

_MOVED = """
CREATE TEMP TABLE upline_before ON COMMIT DROP AS
SELECT u.* FROM etl.user_upline u JOIN upline_candidates g USING (user_id);

CREATE TEMP TABLE moved_users ON COMMIT DROP AS
SELECT user_id FROM (
    (SELECT user_id, level, ancestor_id FROM upline_before
     EXCEPT SELECT user_id, level, ancestor_id FROM upline_after)
    UNION ALL
    (SELECT user_id, level, ancestor_id FROM upline_after
     EXCEPT SELECT user_id, level, ancestor_id FROM upline_before)
) AS diff
UNION
SELECT r.user_id
FROM changed_edge_users r
LEFT JOIN edges_before o ON o.user_id = r.user_id
LEFT JOIN etl.edges n ON n.user_id = r.user_id
WHERE o.referred_at IS DISTINCT FROM n.referred_at OR o.referrer_id IS DISTINCT FROM n.referrer_id;
ALTER TABLE moved_users ADD PRIMARY KEY (user_id);
ANALYZE moved_users;

-- The referral date each moved user had before: roots from edges_before, others unchanged.
CREATE TEMP TABLE referral_dates_before ON COMMIT DROP AS
SELECT m.user_id, o.referred_at
FROM moved_users m JOIN edges_before o ON o.user_id = m.user_id
UNION ALL
SELECT m.user_id, e.referred_at
FROM moved_users m JOIN etl.edges e ON e.user_id = m.user_id
WHERE NOT EXISTS (SELECT 1 FROM changed_edge_users r WHERE r.user_id = m.user_id);

DELETE FROM upline_before o
WHERE NOT EXISTS (SELECT 1 FROM moved_users m WHERE m.user_id = o.user_id);
DELETE FROM etl.user_upline u USING moved_users m WHERE u.user_id = m.user_id;
INSERT INTO etl.user_upline (user_id, level, ancestor_id)
SELECT n.user_id, n.level, n.ancestor_id FROM upline_after n JOIN moved_users m USING (user_id);
ANALYZE upline_before;
"""

# A full recompute starts from nothing: every user with an edge is a root, and moves.
_MOVED_FULL = """
CREATE TEMP TABLE upline_before ON COMMIT DROP AS SELECT * FROM etl.user_upline WHERE false;
CREATE TEMP TABLE moved_users ON COMMIT DROP AS SELECT user_id FROM etl.edges;
ALTER TABLE moved_users ADD PRIMARY KEY (user_id);
ANALYZE moved_users;
CREATE TEMP TABLE referral_dates_before (user_id bigint, referred_at timestamptz) ON COMMIT DROP;
INSERT INTO etl.user_upline (user_id, level, ancestor_id)
SELECT user_id, level, ancestor_id FROM upline_after;
"""

# Full recompute: every user with an edge is a root; nothing existed before.
_FULL_ROOTS = """
INSERT INTO changed_edge_users (user_id)
SELECT DISTINCT user_id FROM etl.src_tracked WHERE user_id IS NOT NULL
ON CONFLICT DO NOTHING
"""


async def run(cycle: Cycle) -> None:
    """The pipeline step: rebuild the changed edges and uplines, leave who moved."""
    cycle.result.users_moved = await rebuild(cycle.conn, full=cycle.full)


async def rebuild(conn: asyncpg.Connection, *, full: bool) -> int:
    """Recompute the edges and uplines touched by this cycle; returns how many users moved."""
    if full:
        await conn.execute(_FULL_ROOTS)
        # Every edge and upline row is new: their indexes are built once, after (a row by row
        # B-tree in random key order grew faster than the data, issue 17).
        async with indexes_built_after(conn, "etl.edges"):
            await conn.execute(_REBUILD_EDGES)
    else:
        await conn.execute(_REBUILD_EDGES)
    await conn.execute(_HELD_EDGES)
    if full:
        # The roots are every tracked user already: nothing below them to add, nothing to diff.
        await conn.execute(_WALK.format(start="changed_edge_users"))
        async with indexes_built_after(conn, "etl.user_upline"):
            await conn.execute(_MOVED_FULL)
    else:
        await conn.execute(_CANDIDATES)
        await conn.execute(_WALK.format(start="upline_candidates"))
        await conn.execute(_MOVED)
    return await conn.fetchval("SELECT count(*) FROM moved_users")
