-- Wallets, their append-only token ledger, expiring lots, pack purchases and debit idempotency keys.

CREATE TABLE wallets (
    user_id    text        NOT NULL,
    balance    bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT pk_wallets PRIMARY KEY (user_id),
    -- The database, not only the code, refuses to spend a token that is not there.
    CONSTRAINT ck_wallets_balance_not_negative CHECK (balance >= 0)
);

-- Every change of a balance is one row here, with what caused it and the balance after it.
CREATE TABLE wallet_ledger (
    id            bigint GENERATED ALWAYS AS IDENTITY,
    user_id       text        NOT NULL,
    kind          text        NOT NULL,
    amount        bigint      NOT NULL,
    balance_after bigint      NOT NULL,
    reference     text        NOT NULL,
    requested     bigint      NULL,
    shortfall     bigint      NULL,
    reason        text        NULL,
    expires_at    timestamptz NULL,
    dedupe_key    text        NULL,
    created_at    timestamptz NOT NULL,
    CONSTRAINT pk_wallet_ledger PRIMARY KEY (id),
    CONSTRAINT fk_wallet_ledger_wallet FOREIGN KEY (user_id) REFERENCES wallets (user_id),
    CONSTRAINT ck_wallet_ledger_kind CHECK (kind IN ('purchase', 'debit', 'refund', 'grant', 'expiry', 'adjustment')),
    CONSTRAINT ck_wallet_ledger_balance_after CHECK (balance_after >= 0),
    CONSTRAINT ck_wallet_ledger_sign CHECK (
        (kind IN ('purchase', 'grant') AND amount > 0)
        OR (kind IN ('debit', 'expiry') AND amount < 0)
        OR (kind = 'refund' AND amount <= 0)
        OR (kind = 'adjustment' AND amount <> 0)),
    CONSTRAINT ck_wallet_ledger_shortfall CHECK (shortfall IS NULL OR (shortfall >= 0 AND requested IS NOT NULL AND requested = shortfall - amount))
);

CREATE INDEX ix_wallet_ledger_user_id ON wallet_ledger (user_id, id DESC);
-- One purchase per checkout session, one grant per idempotency key, one sign-up grant per user.
CREATE UNIQUE INDEX ux_wallet_ledger_dedupe_key ON wallet_ledger (dedupe_key);

CREATE FUNCTION wallet_ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallet_ledger is append-only: % is not allowed', TG_OP USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER tr_wallet_ledger_append_only
    BEFORE UPDATE OR DELETE ON wallet_ledger
    FOR EACH ROW EXECUTE FUNCTION wallet_ledger_is_append_only();

CREATE TRIGGER tr_wallet_ledger_no_truncate
    BEFORE TRUNCATE ON wallet_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_ledger_is_append_only();

-- Tokens that expire. Tokens that never expire are the rest of the balance (balance - sum of remaining lots).
CREATE TABLE wallet_lots (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    user_id    text        NOT NULL,
    ledger_id  bigint      NOT NULL,
    reference  text        NOT NULL,
    granted    bigint      NOT NULL,
    remaining  bigint      NOT NULL,
    expires_at timestamptz NOT NULL,
    expired_at timestamptz NULL,
    CONSTRAINT pk_wallet_lots PRIMARY KEY (id),
    CONSTRAINT fk_wallet_lots_wallet FOREIGN KEY (user_id) REFERENCES wallets (user_id),
    CONSTRAINT fk_wallet_lots_ledger FOREIGN KEY (ledger_id) REFERENCES wallet_ledger (id),
    CONSTRAINT ck_wallet_lots_remaining CHECK (remaining >= 0 AND remaining <= granted AND granted > 0)
);

-- The burn order: soonest-expiring first.
CREATE INDEX ix_wallet_lots_burn_order ON wallet_lots (user_id, expires_at, id) WHERE remaining > 0;
CREATE INDEX ix_wallet_lots_due ON wallet_lots (expires_at) WHERE remaining > 0;

CREATE TABLE wallet_purchases (
    checkout_session_id text        NOT NULL,
    payment_intent_id   text        NULL,
    user_id             text        NOT NULL,
    pack_id             text        NOT NULL,
    tokens              bigint      NOT NULL,
    amount              bigint      NOT NULL,
    currency            text        NOT NULL,
    ledger_id           bigint      NOT NULL,
    lot_id              bigint      NULL,
    -- Tokens the refunds of this purchase have called for so far (refunds are cumulative).
    clawback_requested  bigint      NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL,
    CONSTRAINT pk_wallet_purchases PRIMARY KEY (checkout_session_id),
    CONSTRAINT fk_wallet_purchases_ledger FOREIGN KEY (ledger_id) REFERENCES wallet_ledger (id),
    CONSTRAINT ck_wallet_purchases_clawback CHECK (clawback_requested >= 0 AND clawback_requested <= tokens)
);

CREATE UNIQUE INDEX ux_wallet_purchases_payment_intent_id ON wallet_purchases (payment_intent_id) WHERE payment_intent_id IS NOT NULL;

-- Internal debits by idempotency key: the first answer, replayed for every retry.
CREATE TABLE wallet_debits (
    idempotency_key text        NOT NULL,
    user_id         text        NOT NULL,
    amount          bigint      NOT NULL,
    reference       text        NULL,
    debited         boolean     NOT NULL DEFAULT false,
    balance         bigint      NOT NULL DEFAULT 0,
    ledger_id       bigint      NULL,
    created_at      timestamptz NOT NULL,
    CONSTRAINT pk_wallet_debits PRIMARY KEY (idempotency_key),
    CONSTRAINT ck_wallet_debits_amount CHECK (amount > 0)
);
