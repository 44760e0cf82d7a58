"""Network: usable referral edges and each user's upline p1..p5 (METRICS.md, "the network").

An edge is a tracked row whose user and referrer are both in cadastro and differ. The upline
walk follows edges up to five levels and stops at a user with no usable edge, or at one that
is the user itself or already on the walk, so a cycle in bad data never loops.

After ``rebuild`` the temporary tables say who moved:
- ``moved(user_id)``: users whose upline set or referral date changed; all their history
  moves with them;
- ``old_upline(user_id, level, ancestor_id)``: their upline before the change;
- ``old_join(user_id, referred_at)``: their referral date before the change.
"""

from __future__ import annotations

import asyncpg

_REBUILD_EDGES = """
CREATE TEMP TABLE old_edges ON COMMIT DROP AS
SELECT e.* FROM etl.edges e JOIN tree_roots r USING (user_id);

DELETE FROM etl.edges e USING tree_roots r WHERE e.user_id = r.user_id;

INSERT INTO etl.edges (user_id, referrer_id, referred_at)
SELECT DISTINCT ON (t.user_id) t.user_id, t.afiliado_id, t.criado_em
FROM etl.src_tracked t
JOIN tree_roots r ON r.user_id = t.user_id
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
JOIN tree_roots r ON r.user_id = t.user_id
WHERE t.ok AND NOT EXISTS (SELECT 1 FROM etl.edges e WHERE e.user_id = t.user_id)
ON CONFLICT DO NOTHING
"""

# Everyone whose walk can pass through a changed edge: the roots and four levels below.
_CANDIDATES = """
CREATE TEMP TABLE regroup ON COMMIT DROP AS
WITH RECURSIVE below(user_id, depth) AS (
    SELECT user_id, 0 FROM tree_roots
    UNION
    SELECT e.user_id, b.depth + 1
    FROM below b JOIN etl.edges e ON e.referrer_id = b.user_id
    WHERE b.depth < 4
)
SELECT DISTINCT user_id FROM below;
ANALYZE regroup;
"""

_WALK = """
CREATE TEMP TABLE new_upline ON COMMIT DROP AS
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
CREATE TEMP TABLE old_upline ON COMMIT DROP AS
SELECT u.* FROM etl.user_upline u JOIN regroup g USING (user_id);

CREATE TEMP TABLE moved ON COMMIT DROP AS
SELECT user_id FROM (
    (SELECT user_id, level, ancestor_id FROM old_upline
     EXCEPT SELECT user_id, level, ancestor_id FROM new_upline)
    UNION ALL
    (SELECT user_id, level, ancestor_id FROM new_upline
     EXCEPT SELECT user_id, level, ancestor_id FROM old_upline)
) AS diff
UNION
SELECT r.user_id
FROM tree_roots r
LEFT JOIN old_edges o ON o.user_id = r.user_id
LEFT JOIN etl.edges n ON n.user_id = r.user_id
WHERE o.referred_at IS DISTINCT FROM n.referred_at OR o.referrer_id IS DISTINCT FROM n.referrer_id;
ALTER TABLE moved ADD PRIMARY KEY (user_id);
ANALYZE moved;

-- The referral date each moved user had before: roots from old_edges, others unchanged.
CREATE TEMP TABLE old_join ON COMMIT DROP AS
SELECT m.user_id, o.referred_at
FROM moved m JOIN old_edges o ON o.user_id = m.user_id
UNION ALL
SELECT m.user_id, e.referred_at
FROM moved m JOIN etl.edges e ON e.user_id = m.user_id
WHERE NOT EXISTS (SELECT 1 FROM tree_roots r WHERE r.user_id = m.user_id);

DELETE FROM old_upline o WHERE NOT EXISTS (SELECT 1 FROM moved m WHERE m.user_id = o.user_id);
DELETE FROM etl.user_upline u USING moved m WHERE u.user_id = m.user_id;
INSERT INTO etl.user_upline (user_id, level, ancestor_id)
SELECT n.user_id, n.level, n.ancestor_id FROM new_upline n JOIN moved m USING (user_id);
ANALYZE old_upline;
"""

# A full recompute starts from nothing: every user with an edge is a root, and moves.
_MOVED_FULL = """
CREATE TEMP TABLE old_upline ON COMMIT DROP AS SELECT * FROM etl.user_upline WHERE false;
CREATE TEMP TABLE moved ON COMMIT DROP AS SELECT user_id FROM etl.edges;
ALTER TABLE moved ADD PRIMARY KEY (user_id);
ANALYZE moved;
CREATE TEMP TABLE old_join (user_id bigint, referred_at timestamptz) ON COMMIT DROP;
INSERT INTO etl.user_upline (user_id, level, ancestor_id)
SELECT user_id, level, ancestor_id FROM new_upline;
"""

# Full recompute: every user with an edge is a root; nothing existed before.
_FULL_ROOTS = """
INSERT INTO tree_roots (user_id)
SELECT DISTINCT user_id FROM etl.src_tracked WHERE user_id IS NOT NULL
ON CONFLICT DO NOTHING
"""


async def rebuild(conn: asyncpg.Connection, *, full: bool) -> int:
    """Recompute the edges and uplines touched by this cycle; returns how many users moved."""
    if full:
        await conn.execute(_FULL_ROOTS)
    await conn.execute(_REBUILD_EDGES)
    await conn.execute(_HELD_EDGES)
    if full:
        # The roots are every tracked user already: nothing below them to add, nothing to diff.
        await conn.execute(_WALK.format(start="tree_roots"))
        await conn.execute(_MOVED_FULL)
    else:
        await conn.execute(_CANDIDATES)
        await conn.execute(_WALK.format(start="regroup"))
        await conn.execute(_MOVED)
    return await conn.fetchval("SELECT count(*) FROM moved")
