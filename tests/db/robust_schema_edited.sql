-- The robust database, revision 0001. Table and column names of the public tables are
-- fixed by METRICS.md; etl.* holds the ETL's own state (mirrors, closure, cursors, runs).
-- Money is numeric(18,2): sums of numeric(14,2) source amounts never overflow it.

CREATE SCHEMA IF NOT EXISTS etl;

-- ---------------------------------------------------------------- commission configuration
CREATE TABLE commission_plans (
    id          bigserial PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    is_default  boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX commission_plans_one_default ON commission_plans (is_default) WHERE is_default;

-- What a plan pays, by version: the version in force on a local day is the one with the
-- latest effective_from on or before it.
CREATE TABLE commission_plan_versions (
    id                 bigserial PRIMARY KEY,
    plan_id            bigint        NOT NULL REFERENCES commission_plans (id),
    effective_from     date          NOT NULL,
    cpa_level_1        numeric(14,2) NOT NULL CHECK (cpa_level_1 >= 0),
    cpa_level_2        numeric(14,2) NOT NULL CHECK (cpa_level_2 >= 0),
    cpa_level_3        numeric(14,2) NOT NULL CHECK (cpa_level_3 >= 0),
    cpa_level_4        numeric(14,2) NOT NULL CHECK (cpa_level_4 >= 0),
    cpa_level_5        numeric(14,2) NOT NULL CHECK (cpa_level_5 >= 0),
    rev_share_level_1  numeric(7,6)  NOT NULL CHECK (rev_share_level_1 BETWEEN 0 AND 1),
    rev_share_level_2  numeric(7,6)  NOT NULL CHECK (rev_share_level_2 BETWEEN 0 AND 1),
    rev_share_level_3  numeric(7,6)  NOT NULL CHECK (rev_share_level_3 BETWEEN 0 AND 1),
    rev_share_level_4  numeric(7,6)  NOT NULL CHECK (rev_share_level_4 BETWEEN 0 AND 1),
    rev_share_level_5  numeric(7,6)  NOT NULL CHECK (rev_share_level_5 BETWEEN 0 AND 1),
    negative_carryover boolean       NOT NULL DEFAULT true,
    min_payout         numeric(14,2) NOT NULL DEFAULT 300.00 CHECK (min_payout >= 0),
    created_at         timestamptz   NOT NULL DEFAULT now(),
    UNIQUE (plan_id, effective_from)
);

-- The program's single set of qualification criteria, versioned like the plans.
CREATE TABLE qualification_criteria_versions (
    id               bigserial PRIMARY KEY,
    effective_from   date          NOT NULL UNIQUE,
    min_deposits     numeric(14,2) NOT NULL CHECK (min_deposits >= 0),
    min_stake        numeric(14,2) NOT NULL CHECK (min_stake >= 0),
    min_active_days  integer       NOT NULL CHECK (min_active_days >= 0),
    window_days      integer       CHECK (window_days > 0),
    created_at       timestamptz   NOT NULL DEFAULT now()
);

-- An affiliate on its own plan; everyone else is on the default plan.
CREATE TABLE affiliate_plan_assignments (
    affiliate_id  bigint      PRIMARY KEY,
    plan_id       bigint      NOT NULL REFERENCES commission_plans (id),
    assigned_at   timestamptz NOT NULL DEFAULT now()
);

INSERT INTO commission_plans (id, name, is_default) VALUES (1, 'default', true);
SELECT setval('commission_plans_id_seq', 1);
INSERT INTO commission_plan_versions
    (plan_id, effective_from, cpa_level_1, cpa_level_2, cpa_level_3, cpa_level_4, cpa_level_5,
     rev_share_level_1, rev_share_level_2, rev_share_level_3, rev_share_level_4, rev_share_level_5)
VALUES (1, DATE '1900-01-01', 50.00, 20.00, 10.00, 5.00, 5.00, 0.25, 0.10, 0.05, 0.03, 0.02);
INSERT INTO qualification_criteria_versions (effective_from, min_deposits, min_stake, min_active_days)
VALUES (DATE '1900-01-01', 30.00, 100.00, 2);

-- ---------------------------------------------------------------- the robust tables
CREATE TABLE affiliates (
    affiliate_id               bigint        PRIMARY KEY,
    name                       text          NOT NULL,
    email                      text,
    phone                      text,
    status                     text          NOT NULL CHECK (status IN ('active', 'inactive', 'suspended')),
    is_flagged                 boolean       NOT NULL DEFAULT false,
    total_referrals            integer       NOT NULL DEFAULT 0,
    total_validated_referrals  integer       NOT NULL DEFAULT 0,
    total_deposits             numeric(18,2) NOT NULL DEFAULT 0,
    total_withdrawals          numeric(18,2) NOT NULL DEFAULT 0,
    total_bets                 numeric(18,2) NOT NULL DEFAULT 0,
    total_ggr                  numeric(18,2) NOT NULL DEFAULT 0,
    total_cpa_earned           numeric(18,2) NOT NULL DEFAULT 0,
    total_rev_earned           numeric(18,2) NOT NULL DEFAULT 0,
    total_network_size         integer       NOT NULL DEFAULT 0,
    rank_cpa                   integer,
    rank_referrals             integer,
    registered_at              timestamptz,
    updated_at                 timestamptz   NOT NULL DEFAULT now()
) WITH (fillfactor = 70);
CREATE INDEX affiliates_status ON affiliates (status);
-- Ranking order: rank_cpa ascending is total_cpa_earned descending among active affiliates
-- (ties by id). The rank columns themselves are not indexed, so that re-ranking thousands of
-- tied affiliates after one new validation stays a cheap in-page (HOT) update.
CREATE INDEX affiliates_ranking_cpa ON affiliates (total_cpa_earned DESC, affiliate_id)
    WHERE status = 'active';
CREATE INDEX affiliates_ranking_referrals ON affiliates (total_validated_referrals DESC, affiliate_id)
    WHERE status = 'active';
CREATE INDEX affiliates_cpa_order ON affiliates (total_cpa_earned, affiliate_id);
CREATE INDEX affiliates_rev_order ON affiliates (total_rev_earned, affiliate_id);
CREATE INDEX affiliates_deposits_order ON affiliates (total_deposits, affiliate_id);
CREATE INDEX affiliates_network_order ON affiliates (total_network_size, affiliate_id);
CREATE INDEX affiliates_name_lower ON affiliates (lower(name) text_pattern_ops);

CREATE TABLE affiliate_mlm_structure (
    affiliate_id        bigint        PRIMARY KEY,
    level_1_count       integer       NOT NULL DEFAULT 0,
    level_2_count       integer       NOT NULL DEFAULT 0,
    level_3_count       integer       NOT NULL DEFAULT 0,
    level_4_count       integer       NOT NULL DEFAULT 0,
    level_5_count       integer       NOT NULL DEFAULT 0,
    level_1_deposits    numeric(18,2) NOT NULL DEFAULT 0,
    level_2_deposits    numeric(18,2) NOT NULL DEFAULT 0,
    level_3_deposits    numeric(18,2) NOT NULL DEFAULT 0,
    level_4_deposits    numeric(18,2) NOT NULL DEFAULT 0,
    level_5_deposits    numeric(18,2) NOT NULL DEFAULT 0,
    level_1_bets        numeric(18,2) NOT NULL DEFAULT 0,
    level_2_bets        numeric(18,2) NOT NULL DEFAULT 0,
    level_3_bets        numeric(18,2) NOT NULL DEFAULT 0,
    level_4_bets        numeric(18,2) NOT NULL DEFAULT 0,
    level_5_bets        numeric(18,2) NOT NULL DEFAULT 0,
    level_1_ggr         numeric(18,2) NOT NULL DEFAULT 0,
    level_2_ggr         numeric(18,2) NOT NULL DEFAULT 0,
    level_3_ggr         numeric(18,2) NOT NULL DEFAULT 0,
    level_4_ggr         numeric(18,2) NOT NULL DEFAULT 0,
    level_5_ggr         numeric(18,2) NOT NULL DEFAULT 0,
    level_1_cpa         numeric(18,2) NOT NULL DEFAULT 0,
    level_2_cpa         numeric(18,2) NOT NULL DEFAULT 0,
    level_3_cpa         numeric(18,2) NOT NULL DEFAULT 0,
    level_4_cpa         numeric(18,2) NOT NULL DEFAULT 0,
    level_5_cpa         numeric(18,2) NOT NULL DEFAULT 0,
    level_1_rev         numeric(18,2) NOT NULL DEFAULT 0,
    level_2_rev         numeric(18,2) NOT NULL DEFAULT 0,
    level_3_rev         numeric(18,2) NOT NULL DEFAULT 0,
    level_4_rev         numeric(18,2) NOT NULL DEFAULT 0,
    level_5_rev         numeric(18,2) NOT NULL DEFAULT 0,
    total_network_size  integer       NOT NULL DEFAULT 0,
    updated_at          timestamptz   NOT NULL DEFAULT now()
);

CREATE TABLE affiliate_referrals (
    referrer_id      bigint        NOT NULL,
    referred_id      bigint        NOT NULL,
    mlm_level        smallint      NOT NULL CHECK (mlm_level BETWEEN 1 AND 5),
    referral_date    timestamptz   NOT NULL,
    status           text          NOT NULL CHECK (status IN ('pending', 'validated')),
    validation_date  timestamptz,
    total_deposits   numeric(18,2) NOT NULL DEFAULT 0,
    total_bets       numeric(18,2) NOT NULL DEFAULT 0,
    cpa_amount       numeric(14,2) NOT NULL DEFAULT 0,
    PRIMARY KEY (referrer_id, mlm_level, referred_id)
);
CREATE INDEX affiliate_referrals_by_date ON affiliate_referrals (referrer_id, referral_date DESC, referred_id);
CREATE INDEX affiliate_referrals_by_level_date
    ON affiliate_referrals (referrer_id, mlm_level, referral_date DESC, referred_id);
CREATE INDEX affiliate_referrals_referred ON affiliate_referrals (referred_id);

CREATE TABLE affiliate_cpa_validations (
    id                   bigserial     PRIMARY KEY,
    affiliate_id         bigint        NOT NULL,
    referred_user_id     bigint        NOT NULL,
    validation_date      timestamptz   NOT NULL,
    validation_criteria  jsonb         NOT NULL,
    user_deposits        numeric(18,2) NOT NULL,
    user_bets            numeric(18,2) NOT NULL,
    days_active          integer       NOT NULL,
    cpa_level            smallint      NOT NULL CHECK (cpa_level BETWEEN 1 AND 5),
    cpa_amount           numeric(14,2) NOT NULL CHECK (cpa_amount >= 0),
    cpa_status           text          NOT NULL DEFAULT 'pending'
                         CHECK (cpa_status IN ('pending', 'approved', 'paid', 'rejected')),
    plan_version_id      bigint,
    created_at           timestamptz   NOT NULL DEFAULT now(),
    UNIQUE (referred_user_id, cpa_level)
);
CREATE INDEX affiliate_cpa_validations_affiliate ON affiliate_cpa_validations (affiliate_id, validation_date, id);

CREATE SEQUENCE affiliate_financial_transactions_id_seq;
CREATE TABLE affiliate_financial_transactions (
    id                bigint        NOT NULL DEFAULT nextval('affiliate_financial_transactions_id_seq'),
    affiliate_id      bigint        NOT NULL,
    user_id           bigint,
    mlm_level         smallint      NOT NULL CHECK (mlm_level BETWEEN 1 AND 5),
    transaction_type  text          NOT NULL
                      CHECK (transaction_type IN ('deposit', 'withdrawal', 'bet', 'win', 'bonus', 'cpa', 'rev')),
    amount            numeric(18,2) NOT NULL,
    transaction_date  timestamptz   NOT NULL,
    source_id         bigint
) PARTITION BY RANGE (transaction_date);
CREATE INDEX affiliate_financial_transactions_affiliate
    ON affiliate_financial_transactions (affiliate_id, transaction_date, id);
CREATE INDEX affiliate_financial_transactions_user
    ON affiliate_financial_transactions (user_id, transaction_type, transaction_date);

CREATE TABLE affiliate_periodic_summaries (
    affiliate_id         bigint        NOT NULL,
    period_type          text          NOT NULL CHECK (period_type IN ('daily', 'weekly', 'monthly', 'yearly')),
    period_start         date          NOT NULL,
    new_referrals        integer       NOT NULL DEFAULT 0,
    validated_referrals  integer       NOT NULL DEFAULT 0,
    total_deposits       numeric(18,2) NOT NULL DEFAULT 0,
    total_bets           numeric(18,2) NOT NULL DEFAULT 0,
    total_ggr            numeric(18,2) NOT NULL DEFAULT 0,
    cpa_earned           numeric(18,2) NOT NULL DEFAULT 0,
    rev_earned           numeric(18,2) NOT NULL DEFAULT 0,
    level_breakdown      jsonb         NOT NULL,
    PRIMARY KEY (affiliate_id, period_type, period_start)
);

-- ---------------------------------------------------------------- views
CREATE VIEW v_affiliate_dashboard AS
SELECT a.affiliate_id,
       a.name,
       a.total_validated_referrals,
       a.total_cpa_earned,
       a.total_network_size,
       (m.level_1_count + m.level_2_count + m.level_3_count + m.level_4_count + m.level_5_count)
           AS direct_network
FROM affiliates a
JOIN affiliate_mlm_structure m USING (affiliate_id)
WHERE a.status = 'active';

CREATE VIEW v_affiliate_ranking AS
SELECT a.affiliate_id,
       a.name,
       a.total_cpa_earned,
       a.total_validated_referrals,
       rank() OVER (ORDER BY a.total_cpa_earned DESC)          AS rank_cpa,
       rank() OVER (ORDER BY a.total_validated_referrals DESC) AS rank_referrals
FROM affiliates a
WHERE a.status = 'active';

-- ---------------------------------------------------------------- ETL state (schema etl)
CREATE TABLE etl.sync_cursors (
    source_table  text        PRIMARY KEY,
    cursor_ts     timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO etl.sync_cursors (source_table)
VALUES ('cadastro'), ('tracked'), ('depositos'), ('saque'), ('casino_bets_v');

CREATE TABLE etl.runs (
    id                  bigserial   PRIMARY KEY,
    mode                text        NOT NULL CHECK (mode IN ('incremental', 'full', 'validate')),
    trigger             text        NOT NULL DEFAULT 'cli',
    status              text        NOT NULL CHECK (status IN ('running', 'success', 'failed', 'skipped')),
    started_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at         timestamptz,
    source_as_of        timestamptz,
    rows_read           jsonb       NOT NULL DEFAULT '{}',
    rows_written        jsonb       NOT NULL DEFAULT '{}',
    affiliates_touched  integer     NOT NULL DEFAULT 0,
    anomalies           integer     NOT NULL DEFAULT 0,
    error               text
);
CREATE INDEX runs_status_finished ON etl.runs (status, finished_at DESC);

CREATE TABLE etl.anomalies (
    id             bigserial   PRIMARY KEY,
    source_table   text        NOT NULL,
    source_id      bigint      NOT NULL,
    reason         text        NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_table, source_id, reason)
);

-- Mirrors of the source rows as last read (the current state of each row).
CREATE TABLE etl.src_cadastro (
    id bigint PRIMARY KEY, nome text, email text, telefone text, afiliado boolean, status text,
    criado_em timestamptz, atualizado_em timestamptz, ok boolean NOT NULL
);
CREATE TABLE etl.src_tracked (
    id bigint PRIMARY KEY, user_id bigint, afiliado_id bigint,
    criado_em timestamptz, atualizado_em timestamptz, ok boolean NOT NULL
);
CREATE INDEX src_tracked_user ON etl.src_tracked (user_id);
CREATE INDEX src_tracked_afiliado ON etl.src_tracked (afiliado_id);
CREATE TABLE etl.src_depositos (
    id bigint PRIMARY KEY, user_id bigint, valor numeric(14,2), status text,
    criado_em timestamptz, atualizado_em timestamptz, ok boolean NOT NULL
);
CREATE INDEX src_depositos_user ON etl.src_depositos (user_id, criado_em);
CREATE TABLE etl.src_saque (
    id bigint PRIMARY KEY, user_id bigint, valor numeric(14,2), status text,
    criado_em timestamptz, atualizado_em timestamptz, ok boolean NOT NULL
);
CREATE INDEX src_saque_user ON etl.src_saque (user_id, criado_em);
CREATE TABLE etl.src_bets (
    id bigint PRIMARY KEY, user_id bigint NOT NULL, valor_aposta numeric(14,2) NOT NULL,
    valor_premio numeric(14,2) NOT NULL, criado_em timestamptz NOT NULL
);
CREATE INDEX src_bets_user ON etl.src_bets (user_id, criado_em);

-- Usable referral edges and the upline closure (p1..p5) they give.
CREATE TABLE etl.edges (
    user_id      bigint      PRIMARY KEY,
    referrer_id  bigint      NOT NULL,
    referred_at  timestamptz NOT NULL
);
CREATE INDEX edges_referrer ON etl.edges (referrer_id);
CREATE TABLE etl.user_upline (
    user_id      bigint   NOT NULL,
    level        smallint NOT NULL,
    ancestor_id  bigint   NOT NULL,
    PRIMARY KEY (user_id, level)
);
CREATE INDEX user_upline_ancestor ON etl.user_upline (ancestor_id, level);

-- One row per user and local day with activity (approved money, bets).
CREATE TABLE etl.user_daily (
    user_id           bigint        NOT NULL,
    day               date          NOT NULL,
    deposits          numeric(18,2) NOT NULL,
    deposit_count     integer       NOT NULL,
    withdrawals       numeric(18,2) NOT NULL,
    withdrawal_count  integer       NOT NULL,
    stake             numeric(18,2) NOT NULL,
    win               numeric(18,2) NOT NULL,
    bet_count         integer       NOT NULL,
    first_bet_at      timestamptz,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX user_daily_day ON etl.user_daily (day, user_id);

-- Per affiliate, level and period: the additive figures every summary is made of.
CREATE TABLE etl.affiliate_level_periods (
    affiliate_id      bigint        NOT NULL,
    period_type       text          NOT NULL,
    period_start      date          NOT NULL,
    level             smallint      NOT NULL,
    new_referrals     integer       NOT NULL,
    deposits          numeric(18,2) NOT NULL,
    deposit_count     integer       NOT NULL,
    withdrawals       numeric(18,2) NOT NULL,
    withdrawal_count  integer       NOT NULL,
    stake             numeric(18,2) NOT NULL,
    win               numeric(18,2) NOT NULL,
    bet_count         integer       NOT NULL,
    cpa               numeric(18,2) NOT NULL,
    validations       integer       NOT NULL,
    rev               numeric(18,2) NOT NULL,
    PRIMARY KEY (affiliate_id, period_type, period_start, level)
);
