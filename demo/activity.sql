-- The demo operator's money: depositos, saque and casino_bets_v, built from sessions.
--
-- A player has a few active days (heavy-tailed, most soon after signing up); each
-- active day is one session in the evening-heavy local hours, with its deposits first,
-- then its bets, then maybe a withdrawal. Keys for pg_temp.u are global ordinals, so
-- every row's randomness is its own. {placeholders} are filled in by demo/generator.py.

-- name: sessions
CREATE TEMP TABLE player AS
SELECT idx, uid, signup,
       floor(extract(epoch FROM {now} - signup) / 86400)::int AS avail_days,
       -- the stake a player sits around: index into the stake ladder, exponential
       least({max_stake_level}, floor(-2.8 * ln(1.0 - pg_temp.u(idx, 40))))::int AS stake_level,
       -- active days: Lomax, median 4, a long tail of regulars (fewer for late joiners)
       least(366, 1 + floor(8 * ((1.0 - pg_temp.u(idx, 41)) ^ (-0.5) - 1)))::int AS planned_days
FROM member
WHERE pg_temp.u(idx, 42) < {player_share} AND signup < {now} - interval '2 hours';

CREATE TEMP TABLE session_day AS
SELECT d.idx, d.k, d.day_off::int AS day_off
FROM (
    SELECT p.idx, p.avail_days, k,
           sum(CASE WHEN k > 1
                    -- regulars come back every day or two, casuals every few weeks
                    THEN 1 + floor(-ln(1.0 - pg_temp.u(p.idx * 512 + k, 44))
                                   * least(30.0, greatest(0.3, 90.0 / p.planned_days)))
                    -- most first sessions are on the sign-up day
                    WHEN pg_temp.u(p.idx * 512 + k, 43) < 0.6 THEN 0
                    ELSE floor(-ln(1.0 - pg_temp.u(p.idx * 512 + k, 44)) * 4) END)
               OVER (PARTITION BY p.idx ORDER BY k) AS day_off
    FROM player p, generate_series(1, p.planned_days) AS k
) d
WHERE d.day_off <= d.avail_days;

CREATE TEMP TABLE session AS
SELECT row_number() OVER (ORDER BY d.idx, d.k) AS sid, d.idx, d.k, p.uid, p.stake_level,
       p.signup, d.day_off
FROM session_day d JOIN player p USING (idx);
DROP TABLE session_day;

ALTER TABLE session
    ADD COLUMN duration float8, ADD COLUMN started timestamptz, ADD COLUMN n_bets int,
    ADD COLUMN n_deposits int, ADD COLUMN n_withdrawals int, ADD COLUMN game text,
    ADD COLUMN other_game text, ADD COLUMN phase float8;
UPDATE session s SET
    duration = t.duration,
    -- local day of the session at an evening-heavy hour, after sign-up, before now
    started = least({now} - interval '1 second' * (t.duration + 120),
                    greatest(s.signup + interval '1 second' * (60 + 240 * pg_temp.u(s.sid, 50)),
                             (((s.signup AT TIME ZONE '{tz}')::date + s.day_off)
                              + interval '1 second' * t.time_of_day) AT TIME ZONE '{tz}')),
    n_bets = 5 + floor(34 * pg_temp.u(s.sid, 52) ^ 2.2),
    n_deposits = CASE WHEN s.k = 1 THEN 1 + (pg_temp.u(s.sid, 53) < 0.45)::int
                                          + (pg_temp.u(s.sid, 53) < 0.15)::int
                      ELSE width_bucket(pg_temp.u(s.sid, 53),
                                        ARRAY[0.08, 0.38, 0.62, 0.80, 0.90, 0.95]) END,
    n_withdrawals = (pg_temp.u(s.sid, 54) < 0.36)::int + (pg_temp.u(s.sid, 54) < 0.03)::int,
    game = ({games})[1 + floor({n_games} * pg_temp.u(s.sid, 55) ^ 2.2)],
    other_game = ({games})[1 + floor({n_games} * pg_temp.u(s.sid, 56) ^ 1.5)],
    phase = pg_temp.u(s.idx, 57)  -- per player: see bets
FROM (
    SELECT sid,
           300 + 3300 * pg_temp.u(sid, 58) ^ 1.5 AS duration,
           8 * 3600 + 14.75 * 3600 * greatest(pg_temp.u(sid, 59), pg_temp.u(sid, 60))
               AS time_of_day
    FROM session
) t
WHERE t.sid = s.sid;

-- global ordinals of each session's rows (ids and randomness keys)
ALTER TABLE session ADD COLUMN bet_ordinal bigint, ADD COLUMN deposit_ordinal bigint,
    ADD COLUMN withdrawal_ordinal bigint;
UPDATE session s SET
    bet_ordinal = o.bet_ordinal, deposit_ordinal = o.deposit_ordinal,
    withdrawal_ordinal = o.withdrawal_ordinal
FROM (
    SELECT sid,
           sum(n_bets) OVER w - n_bets AS bet_ordinal,
           sum(n_deposits) OVER w - n_deposits AS deposit_ordinal,
           sum(n_withdrawals) OVER w - n_withdrawals AS withdrawal_ordinal
    FROM session WINDOW w AS (ORDER BY sid)
) o
WHERE o.sid = s.sid;
ALTER TABLE session ADD PRIMARY KEY (sid);
ANALYZE session;

-- name: totals
SELECT count(*) AS sessions, coalesce(sum(n_bets), 0) AS bets,
       coalesce(sum(n_deposits), 0) AS deposits,
       coalesce(sum(n_withdrawals), 0) AS withdrawals
FROM session;

-- name: depositos
INSERT INTO depositos (id, user_id, valor, status, criado_em, atualizado_em)
SELECT {deposit_id}, d.uid, d.valor, d.status, d.criado_em,
       least({now}, CASE d.status
           -- PIX confirms in seconds; a few approved ones are touched again later
           WHEN 'aprovado' THEN CASE WHEN pg_temp.u(d.ordinal, 73) < 0.03
                                     THEN d.criado_em + interval '1 day' * 20 * pg_temp.u(d.ordinal, 74)
                                     ELSE d.criado_em + interval '1 second'
                                          * (3 + 240 * pg_temp.u(d.ordinal, 74) ^ 3) END
           WHEN 'cancelado' THEN d.criado_em + interval '1 second'
                                 * (600 + 259200 * pg_temp.u(d.ordinal, 74) ^ 2)
           ELSE d.criado_em END)
FROM (
    SELECT s.deposit_ordinal + j AS ordinal, s.uid,
           s.started + interval '1 second'
               * (-60 + (j - 1) * s.duration / s.n_deposits + 50 * pg_temp.u(s.deposit_ordinal + j, 70))
               AS criado_em,
           CASE WHEN pg_temp.u(s.deposit_ordinal + j, 72) < 0.85 THEN 'aprovado'
                WHEN pg_temp.u(s.deposit_ordinal + j, 72) < 0.95 THEN 'pendente'
                ELSE 'cancelado' END AS status,
           CASE WHEN pg_temp.u(s.deposit_ordinal + j, 75) < 0.3
                THEN greatest(1.00, round(a.amount * (0.75 + 0.5 * pg_temp.u(s.deposit_ordinal + j, 76))::numeric, 2))
                ELSE a.amount END AS valor
    FROM session s
    CROSS JOIN LATERAL generate_series(1, s.n_deposits) AS j
    CROSS JOIN LATERAL (
        SELECT ({deposit_amounts})[1 + least({max_deposit_level},
                   s.stake_level + floor(4 * pg_temp.u(s.deposit_ordinal + j, 71))::int)] AS amount
    ) a
) d;

-- name: orphan_deposits
-- messy source data: deposits of users that are not in cadastro (yet)
INSERT INTO depositos (id, user_id, valor, status, criado_em, atualizado_em)
SELECT {deposit_id}, {future_depositor_id}, 50.00, 'aprovado', d.criado_em,
       least({now}, d.criado_em + interval '30 seconds')
FROM (
    SELECT {deposit_count} + r AS ordinal, r,
           {now} - interval '1 day' * 30 * pg_temp.u({deposit_count} + r, 77) AS criado_em
    FROM generate_series(1, {orphan_deposits}) AS r
) d;

-- name: saque
INSERT INTO saque (id, user_id, valor, status, criado_em, atualizado_em)
SELECT {withdrawal_id}, w.uid, w.valor, w.status, w.criado_em,
       least({now}, CASE w.status
           WHEN 'aprovado' THEN w.criado_em + interval '1 second'
                                * (120 + 86400 * pg_temp.u(w.ordinal, 83) ^ 3)
           WHEN 'cancelado' THEN w.criado_em + interval '1 second'
                                 * (1800 + 172800 * pg_temp.u(w.ordinal, 83))
           ELSE w.criado_em END)
FROM (
    SELECT s.withdrawal_ordinal + j AS ordinal, s.uid,
           s.started + interval '1 second'
               * (s.duration + 30 * j + 30 * pg_temp.u(s.withdrawal_ordinal + j, 80)) AS criado_em,
           CASE WHEN pg_temp.u(s.withdrawal_ordinal + j, 81) < 0.82 THEN 'aprovado'
                WHEN pg_temp.u(s.withdrawal_ordinal + j, 81) < 0.93 THEN 'pendente'
                ELSE 'cancelado' END AS status,
           greatest(10.00, round((({deposit_amounts})[1 + least({max_deposit_level},
                   s.stake_level + floor(4 * pg_temp.u(s.withdrawal_ordinal + j, 82))::int)]
               * (0.4 + 2.5 * pg_temp.u(s.withdrawal_ordinal + j, 84) ^ 2))::numeric, 2)) AS valor
    FROM session s
    CROSS JOIN LATERAL generate_series(1, s.n_withdrawals) AS j
) w;

-- name: bets
-- Outcomes run along a golden-ratio sequence over each player's bets (their ordinals
-- are consecutive): a player's bets cover the win/lose and multiplier quantiles evenly,
-- so even a tiny operator's RTP lands near the target (a hash per bet would leave it
-- to a few lucky spins of a high roller).
INSERT INTO casino_bets_v (id, user_id, jogo, valor_aposta, valor_premio, criado_em)
SELECT {bet_id}, b.uid,
       CASE WHEN pg_temp.u(b.ordinal, 91) < 0.0005 THEN NULL
            WHEN pg_temp.u(b.ordinal, 91) < 0.8 THEN b.game ELSE b.other_game END,
       b.stake,
       CASE WHEN b.stake = 0 THEN CASE WHEN b.outcome < 0.4
                                       THEN round((0.2 + 4.8 * pg_temp.u(b.ordinal, 92))::numeric, 2)
                                       ELSE 0 END
            WHEN b.outcome < {win_share}
                THEN round(b.stake * ({multiplier_scale} * (-ln(greatest(b.outcome / {win_share}, 1e-12)))
                                      ^ {multiplier_shape})::numeric, 2)
            ELSE 0 END,
       b.criado_em
FROM (
    SELECT s.bet_ordinal + j AS ordinal, s.uid, s.game, s.other_game,
           s.started + interval '1 second' * (30 + (s.duration - 30)
               * ((j - 1 + pg_temp.u(s.bet_ordinal + j, 93)) / s.n_bets)) AS criado_em,
           -- a few free spins (stake 0); otherwise the player's stake, give or take a step
           CASE WHEN pg_temp.u(s.bet_ordinal + j, 94) < 0.002 THEN 0::numeric
                ELSE ({stakes})[1 + greatest(0, least({max_stake_level}, s.stake_level
                         + width_bucket(pg_temp.u(s.bet_ordinal + j, 95), ARRAY[0.2, 0.8, 0.95]) - 1))]
           END AS stake,
           (s.phase + (s.bet_ordinal + j) * 0.6180339887498949)
               - floor(s.phase + (s.bet_ordinal + j) * 0.6180339887498949) AS outcome
    FROM session s
    CROSS JOIN LATERAL generate_series(1, s.n_bets) AS j
    WHERE s.sid BETWEEN $1 AND $2
) b;

-- name: cleanup
DROP TABLE IF EXISTS session, player, member, edge, category;
