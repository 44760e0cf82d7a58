-- The demo operator's people: cadastro and tracked (who referred whom).
--
-- Sections are run in order by demo/generator.py; {placeholders} are filled in by it
-- (numbers, timestamps and SQL expressions it renders itself, never user text).
-- All randomness comes from pg_temp.u(key, salt), a hash of (key, salt, seed): the
-- rows never depend on the order or the plan the database happens to use.

-- name: functions
CREATE FUNCTION pg_temp.u(k bigint, salt int) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashint8extended(k, hashint8extended(salt, {seed})) & 4503599627370495)::float8
             / 4503599627370496.0 $$;

CREATE TEMP TABLE category (
    tree           int    NOT NULL,
    lvl            int    NOT NULL,
    users          int    NOT NULL,
    candidates     int    NOT NULL,
    founder_weight float8 NOT NULL
);

-- name: members
-- One row per user: its place in the forest (tree, level), whether it may recruit,
-- how attractive a recruiter it is, and when it signed up. The first user of each
-- level of a tree (its "founder") joins before everyone else of the tree, so every
-- later user has someone to be referred by.
CREATE TEMP TABLE member_slot AS
SELECT c.tree, c.lvl, k, c.candidates, c.founder_weight,
       c.tree::bigint * 1000000000 + c.lvl::bigint * 100000000 + k AS slot_key
FROM category c, generate_series(1, c.users) AS k;

CREATE TEMP TABLE member_order AS
SELECT row_number() OVER (ORDER BY join_key, slot_key) AS idx, tree, lvl, slot_key,
       recruit_rank <= candidates AS is_candidate,
       CASE WHEN k = 1 THEN founder_weight
            -- Pareto: most recruiters bring a few people, a few bring a crowd
            ELSE least(1000.0, (1.0 - pg_temp.u(slot_key, 3)) ^ (-1.0 / 1.3)) END AS weight
FROM (
    SELECT s.*,
           CASE WHEN s.k = 1 AND s.tree > 0 THEN -1.0 + s.tree * 0.01 + s.lvl * 0.0001
                -- deeper levels join a little later on average
                ELSE pg_temp.u(s.slot_key, 1) ^ (1.0 / (1 + 0.15 * s.lvl)) END AS join_key,
           row_number() OVER (PARTITION BY s.tree, s.lvl
                              ORDER BY s.k = 1 DESC, pg_temp.u(s.slot_key, 2)) AS recruit_rank
    FROM member_slot s
) keyed;

CREATE TEMP TABLE member AS
SELECT o.idx, o.tree, o.lvl, o.is_candidate, o.weight,
       -- the document's example affiliate keeps its id: swap it with whoever drew it
       CASE WHEN o.idx = 1 THEN {example_id}
            WHEN {member_id} = {example_id} THEN {first_member_id}
            ELSE {member_id} END AS uid,
       -- sign-ups grow over the year: density 0.1 + 1.8x on [0, 1], inverted
       {start} + interval '1 second' * (365 * 86400) *
           ((-0.1 + sqrt(0.01 + 3.6 * ((o.idx - 1 + 0.999 * pg_temp.u(o.idx, 4)) / {users})))
            / 1.8) AS signup
FROM member_order o;
ALTER TABLE member ADD PRIMARY KEY (idx);
DROP TABLE member_slot, member_order;

-- name: referrals
-- Each referred user picks its referrer among the recruiters one level up in its tree
-- that joined before it, in proportion to their weight: cumulative weights plus a
-- binary search through an index. Early recruiters get the most referrals.
CREATE TEMP TABLE recruiter AS
SELECT tree, lvl, idx, sum(weight) OVER (PARTITION BY tree, lvl ORDER BY idx) AS cum_weight
FROM member WHERE is_candidate;
CREATE INDEX ON recruiter (tree, lvl, idx) INCLUDE (cum_weight);
CREATE INDEX ON recruiter (tree, lvl, cum_weight) INCLUDE (idx);
ANALYZE recruiter;

CREATE TEMP TABLE edge AS
SELECT m.idx, pick.idx AS parent_idx
FROM member m
CROSS JOIN LATERAL (
    SELECT r.cum_weight FROM recruiter r
    WHERE r.tree = m.tree AND r.lvl = m.lvl - 1 AND r.idx < m.idx
    ORDER BY r.idx DESC LIMIT 1
) available
CROSS JOIN LATERAL (
    SELECT r.idx FROM recruiter r
    WHERE r.tree = m.tree AND r.lvl = m.lvl - 1
      AND r.cum_weight >= available.cum_weight * pg_temp.u(m.idx, 5)
    ORDER BY r.cum_weight LIMIT 1
) pick
WHERE m.lvl >= 1;
ALTER TABLE edge ADD PRIMARY KEY (idx);
DROP TABLE recruiter;

-- name: cadastro
INSERT INTO cadastro (id, nome, email, telefone, afiliado, status, criado_em, atualizado_em)
SELECT m.uid,
       p.first_name || coalesce(' ' || p.second_name, '') || ' ' || p.surname
           || coalesce(' ' || p.second_surname, ''),
       CASE WHEN pg_temp.u(m.idx, 16) < 0.015 THEN NULL
            ELSE lower(translate(
                CASE WHEN pg_temp.u(m.idx, 17) < 0.45 THEN p.first_name || '.' || p.surname
                     WHEN pg_temp.u(m.idx, 17) < 0.75
                         THEN p.first_name || p.surname || floor(pg_temp.u(m.idx, 18) * 100)
                     WHEN pg_temp.u(m.idx, 17) < 0.90
                         THEN p.first_name || '_' || coalesce(p.second_surname, p.surname)
                     ELSE p.first_name || floor(1960 + pg_temp.u(m.idx, 18) * 48) END,
                'ÁÀÂÃÉÊÍÓÔÕÚÇáàâãéêíóôõúç ', 'AAAAEEIOOOUCaaaaeeiooouc'))
                 || '@' || ({email_domains})[1 + floor(pg_temp.u(m.idx, 19) * {n_email_domains})]
       END,
       CASE WHEN pg_temp.u(m.idx, 20) < 0.04 THEN NULL
            ELSE '+55 ' || ({area_codes})[1 + floor(pg_temp.u(m.idx, 21) * {n_area_codes})]
                 || ' 9' || (6 + floor(pg_temp.u(m.idx, 22) * 4))
                 || lpad(floor(pg_temp.u(m.idx, 23) * 1000)::text, 3, '0')
                 || '-' || lpad(floor(pg_temp.u(m.idx, 24) * 10000)::text, 4, '0')
       END,
       -- a recruiter that recruited nobody is an affiliate only by signing up as one
       m.is_candidate AND (children.n IS NULL OR pg_temp.u(m.idx, 25) < 0.8),
       s.status,
       m.signup,
       CASE WHEN s.status <> 'ativo' OR pg_temp.u(m.idx, 26) < 0.12
            THEN m.signup + ({now} - m.signup) * pg_temp.u(m.idx, 27)
            ELSE m.signup END
FROM member m
LEFT JOIN (SELECT parent_idx, count(*) AS n FROM edge GROUP BY parent_idx) children
       ON children.parent_idx = m.idx
CROSS JOIN LATERAL (
    SELECT ({first_names})[1 + floor(pg_temp.u(m.idx, 10) * {n_first_names})] AS first_name,
           CASE WHEN pg_temp.u(m.idx, 11) < 0.15
                THEN ({second_names})[1 + floor(pg_temp.u(m.idx, 12) * {n_second_names})]
           END AS second_name,
           ({surnames})[1 + floor(pg_temp.u(m.idx, 13) * {n_surnames})] AS surname,
           CASE WHEN pg_temp.u(m.idx, 14) < 0.75
                THEN ({surnames})[1 + floor(pg_temp.u(m.idx, 15) * {n_surnames})]
           END AS second_surname
) p
CROSS JOIN LATERAL (
    SELECT CASE WHEN pg_temp.u(m.idx, 28) < 0.92 THEN 'ativo'
                WHEN pg_temp.u(m.idx, 28) < 0.975 THEN 'inativo'
                ELSE 'suspenso' END AS status
) s;

-- name: tracked
INSERT INTO tracked (id, user_id, afiliado_id, criado_em, atualizado_em)
SELECT {tracked_id}, r.user_id, r.afiliado_id, r.criado_em,
       -- a few referrals were moved by support later: only atualizado_em tells
       CASE WHEN pg_temp.u(r.ordinal, 31) < 0.005
            THEN r.criado_em + ({now} - r.criado_em) * pg_temp.u(r.ordinal, 32)
            ELSE r.criado_em END
FROM (
    SELECT row_number() OVER (ORDER BY edges.idx) AS ordinal, edges.*
    FROM (
        SELECT m.idx, m.uid AS user_id, parent.uid AS afiliado_id,
               least({now}, m.signup + interval '1 second' * (2 + 60 * pg_temp.u(m.idx, 30)))
                   AS criado_em
        FROM edge e
        JOIN member m ON m.idx = e.idx
        JOIN member parent ON parent.idx = e.parent_idx
        UNION ALL
        -- messy source data: referrals to users that have not arrived yet, and
        -- self-referrals, all on organic users (so the real forest is unchanged)
        SELECT o.idx, o.uid,
               CASE WHEN o.rank <= {orphan_referrals} THEN {future_referrer_id} ELSE o.uid END,
               least({now}, o.signup + interval '1 second' * (2 + 60 * pg_temp.u(o.idx, 30)))
        FROM (
            SELECT idx, uid, signup, row_number() OVER (ORDER BY pg_temp.u(idx, 33)) AS rank
            FROM member WHERE tree = 0
        ) o
        WHERE o.rank <= {orphan_referrals} + {self_referrals}
    ) edges
) r;
