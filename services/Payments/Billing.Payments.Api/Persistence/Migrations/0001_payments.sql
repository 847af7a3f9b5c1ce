-- Payments owns Stripe's raw events (the webhook inbox), what it last published about each subscription, and the
-- payments and refunds users see in their history.
CREATE TABLE stripe_events (
    id              text        NOT NULL,
    type            text        NOT NULL,
    api_version     text        NULL,
    livemode        boolean     NOT NULL DEFAULT false,
    stripe_created  timestamptz NOT NULL,
    object_type     text        NULL,
    object_id       text        NULL,
    order_key       text        NOT NULL,
    payload         text        NOT NULL,
    source          text        NOT NULL DEFAULT 'webhook',
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text        NULL,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz NULL,
    CONSTRAINT pk_stripe_events PRIMARY KEY (id),
    CONSTRAINT ck_stripe_events_status CHECK (status IN ('pending', 'processed', 'ignored', 'failed')),
    CONSTRAINT ck_stripe_events_source CHECK (source IN ('webhook', 'reconcile', 'replay'))
);

CREATE INDEX ix_stripe_events_due ON stripe_events (next_attempt_at) WHERE status = 'pending';
CREATE INDEX ix_stripe_events_status ON stripe_events (status, received_at DESC);
CREATE INDEX ix_stripe_events_created ON stripe_events (stripe_created DESC);

CREATE TABLE subscription_mirror (
    subscription_id text        NOT NULL,
    user_id         text        NOT NULL,
    snapshot        jsonb       NOT NULL,
    activated       boolean     NOT NULL,
    ended           boolean     NOT NULL,
    sequence        bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_subscription_mirror PRIMARY KEY (subscription_id)
);

CREATE TABLE payments (
    id                text        NOT NULL,
    user_id           text        NOT NULL,
    kind              text        NOT NULL,
    amount            bigint      NOT NULL,
    currency          text        NOT NULL,
    status            text        NOT NULL,
    description       text        NOT NULL,
    invoice_id        text        NULL,
    payment_intent_id text        NULL,
    charge_id         text        NULL,
    subscription_id   text        NULL,
    plan_id           text        NULL,
    pack_id           text        NULL,
    tokens            bigint      NULL,
    checkout_session_id text      NULL,
    amount_refunded   bigint      NOT NULL DEFAULT 0,
    invoice_url       text        NULL,
    receipt_url       text        NULL,
    paid_at           timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_payments PRIMARY KEY (id),
    CONSTRAINT ck_payments_kind CHECK (kind IN ('subscription', 'token_pack')),
    CONSTRAINT ck_payments_status CHECK (status IN ('paid', 'partially_refunded', 'refunded', 'failed')),
    CONSTRAINT ck_payments_amounts CHECK (amount >= 0 AND amount_refunded >= 0 AND amount_refunded <= amount)
);

CREATE INDEX ix_payments_user ON payments (user_id, paid_at DESC);
CREATE UNIQUE INDEX ux_payments_payment_intent ON payments (payment_intent_id) WHERE payment_intent_id IS NOT NULL;
CREATE INDEX ix_payments_charge ON payments (charge_id) WHERE charge_id IS NOT NULL;
