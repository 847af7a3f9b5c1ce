-- Returns: a debit's unused tokens go back (a token-backed reservation committed for less than it reserved, released
-- or expired). A return puts the tokens back into the lots the debit took them from, so an expiring token comes back
-- with its own expiry; it is one 'return' ledger row, once per debit.

ALTER TABLE wallet_ledger DROP CONSTRAINT ck_wallet_ledger_kind;
ALTER TABLE wallet_ledger ADD CONSTRAINT ck_wallet_ledger_kind
    CHECK (kind IN ('purchase', 'debit', 'refund', 'grant', 'expiry', 'adjustment', 'return'));
ALTER TABLE wallet_ledger DROP CONSTRAINT ck_wallet_ledger_sign;
ALTER TABLE wallet_ledger ADD CONSTRAINT ck_wallet_ledger_sign CHECK (
    (kind IN ('purchase', 'grant', 'return') AND amount > 0)
    OR (kind IN ('debit', 'expiry') AND amount < 0)
    OR (kind = 'refund' AND amount <= 0)
    OR (kind = 'adjustment' AND amount <> 0));

-- How many tokens each debit took from each expiring lot (the rest of a debit came from tokens that never expire).
CREATE TABLE wallet_debit_lots (
    idempotency_key text   NOT NULL,
    lot_id          bigint NOT NULL,
    amount          bigint NOT NULL,
    CONSTRAINT pk_wallet_debit_lots PRIMARY KEY (idempotency_key, lot_id),
    CONSTRAINT fk_wallet_debit_lots_debit FOREIGN KEY (idempotency_key) REFERENCES wallet_debits (idempotency_key),
    CONSTRAINT fk_wallet_debit_lots_lot FOREIGN KEY (lot_id) REFERENCES wallet_lots (id),
    CONSTRAINT ck_wallet_debit_lots_amount CHECK (amount > 0)
);

-- A debit's return, asked once: how many tokens went back and the ledger row. A return asked for a key that was never
-- debited is recorded too (debited = false), so a debit arriving late under that key takes nothing.
ALTER TABLE wallet_debits ADD COLUMN returned bigint NOT NULL DEFAULT 0;
ALTER TABLE wallet_debits ADD COLUMN return_asked bigint NULL;
ALTER TABLE wallet_debits ADD COLUMN return_ledger_id bigint NULL;
ALTER TABLE wallet_debits ADD COLUMN returned_at timestamptz NULL;
ALTER TABLE wallet_debits ADD CONSTRAINT ck_wallet_debits_returned
    CHECK (returned >= 0 AND returned <= amount AND (return_asked IS NULL OR (return_asked > 0 AND return_asked <= amount)));
ALTER TABLE wallet_debits ADD CONSTRAINT fk_wallet_debits_return_ledger FOREIGN KEY (return_ledger_id) REFERENCES wallet_ledger (id);
