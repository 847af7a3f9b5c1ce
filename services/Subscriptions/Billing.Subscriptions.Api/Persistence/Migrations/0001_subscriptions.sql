-- Subscriptions owns the user <-> Stripe customer link, the subscriptions as Stripe last described them, and an
-- audit of every change.
CREATE TABLE customers (
    user_id            text        NOT NULL,
    stripe_customer_id text        NOT NULL,
    email              text        NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_customers PRIMARY KEY (user_id),
    CONSTRAINT ux_customers_stripe_customer_id UNIQUE (stripe_customer_id)
);

CREATE TABLE subscriptions (
    subscription_id      text        NOT NULL,
    user_id              text        NOT NULL,
    customer_id          text        NOT NULL,
    plan_id              text        NOT NULL,
    price_id             text        NOT NULL,
    interval             text        NOT NULL,
    interval_count       integer     NOT NULL,
    stripe_status        text        NOT NULL,
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    cancel_at_period_end boolean     NOT NULL,
    trial_end            timestamptz NULL,
    started_at           timestamptz NOT NULL,
    ended_at             timestamptz NULL,
    ended_reason         text        NULL,
    past_due_since       timestamptz NULL,
    grace_until          timestamptz NULL,
    suspended_at         timestamptz NULL,
    sequence             bigint      NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_subscriptions PRIMARY KEY (subscription_id),
    CONSTRAINT ck_subscriptions_interval_count CHECK (interval_count >= 1)
);

CREATE INDEX ix_subscriptions_user ON subscriptions (user_id, updated_at DESC);
CREATE INDEX ix_subscriptions_grace ON subscriptions (grace_until) WHERE suspended_at IS NULL AND grace_until IS NOT NULL;

CREATE TABLE subscription_history (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    user_id         text        NOT NULL,
    subscription_id text        NOT NULL,
    change          text        NOT NULL,
    detail          text        NOT NULL,
    caused_by       text        NOT NULL,
    stripe_event_id text        NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_subscription_history PRIMARY KEY (id)
);

CREATE INDEX ix_subscription_history_user ON subscription_history (user_id, id DESC);
