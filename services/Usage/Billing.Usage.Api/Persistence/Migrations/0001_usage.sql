-- Usage's own tables. Counters are keyed by their window's start: a new window is a new row, nothing resets.

CREATE TABLE usage_subjects (
    user_id            text        NOT NULL,
    plan_id            text        NOT NULL,
    subscription_id    text        NULL,
    stripe_status      text        NULL,
    access             text        NOT NULL DEFAULT 'none',
    anchor             timestamptz NULL,
    period_start       timestamptz NULL,
    period_end         timestamptz NULL,
    last_sequence      bigint      NOT NULL DEFAULT 0,
    status_occurred_at timestamptz NULL,
    suspended_at       timestamptz NULL,
    groups             text[]      NOT NULL DEFAULT '{}',
    updated_at         timestamptz NOT NULL,
    CONSTRAINT pk_usage_subjects PRIMARY KEY (user_id),
    CONSTRAINT ck_usage_subjects_access CHECK (access IN ('full', 'suspended', 'none'))
);

-- The last Sequence applied per subscription, so a late message about an older subscription is recognised too.
CREATE TABLE usage_subscriptions (
    subscription_id text        NOT NULL,
    user_id         text        NOT NULL,
    last_sequence   bigint      NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT pk_usage_subscriptions PRIMARY KEY (subscription_id)
);

CREATE TABLE usage_counters (
    user_id      text        NOT NULL,
    meter        text        NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    used         bigint      NOT NULL,
    CONSTRAINT pk_usage_counters PRIMARY KEY (user_id, meter, window_start),
    CONSTRAINT ck_usage_counters_used CHECK (used >= 0)
);

-- One row per idempotency key with the first answer, written in the same transaction as the spend.
CREATE TABLE consumptions (
    idempotency_key text        NOT NULL,
    consumption_id  uuid        NOT NULL,
    user_id         text        NOT NULL,
    meter           text        NOT NULL,
    quantity        bigint      NOT NULL,
    allowed         boolean     NOT NULL,
    source          text        NULL,
    status_code     integer     NOT NULL,
    answer          json        NOT NULL, -- json, not jsonb: the answer is replayed byte for byte
    window_start    timestamptz NULL,
    created_at      timestamptz NOT NULL,
    CONSTRAINT pk_consumptions PRIMARY KEY (idempotency_key),
    CONSTRAINT ux_consumptions_consumption_id UNIQUE (consumption_id),
    CONSTRAINT ck_consumptions_quantity CHECK (quantity > 0)
);

CREATE INDEX ix_consumptions_user_allowed ON consumptions (user_id, created_at) WHERE allowed;

-- Wallet's balance as last announced (TokensGranted / TokensClawedBack), for the consume answer.
CREATE TABLE token_balances (
    user_id     text        NOT NULL,
    balance     bigint      NOT NULL,
    occurred_at timestamptz NOT NULL,
    CONSTRAINT pk_token_balances PRIMARY KEY (user_id)
);
