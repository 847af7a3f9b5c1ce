-- The user's latest subscription checkout session. A user has at most one open at a time: a new checkout expires the
-- previous session in Stripe first (under this row's lock), so two tabs (monthly and yearly) cannot both be paid and
-- end in two subscriptions. The generation changes whenever a session is expired, so that the next session is created
-- under a new Stripe idempotency key instead of replaying the expired one.
CREATE TABLE subscription_checkouts (
    user_id         text        NOT NULL,
    session_id      text        NULL,
    idempotency_key text        NULL,
    generation      integer     NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_subscription_checkouts PRIMARY KEY (user_id)
);
