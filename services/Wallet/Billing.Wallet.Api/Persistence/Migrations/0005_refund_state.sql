-- A pack's claw-back follows the state of its payment, not only its growth: a refund that fails (a closed card) or a
-- chargeback the merchant wins gives back what it took. The purchase keeps the latest state applied, so that messages
-- arriving in any order end in the same place:
--   refund_undone, refund_amount: the charge's refunds that failed or were canceled, and what is refunded — a message
--     applies only if (undone, amount) is greater (Payments: undone only grows, and between two values amount only grows);
--   refund_tokens: what the refunds alone call for (the claw-back target while no chargeback stands);
--   dispute_status: 'open' while a chargeback stands, then how it ended ('won', 'lost'); a closed one is never reopened
--     by a late message;
--   clawback_floor: what was clawed back before the state was recorded (before this migration, or by a replica of the
--     previous version during the rollout): never given back by itself (an admin adjustment can);
--   clawback_moves: how many times the target moved, so the ledger keys of a later move differ from an earlier one's.
ALTER TABLE wallet_purchases ADD COLUMN refund_undone integer NOT NULL DEFAULT 0;
ALTER TABLE wallet_purchases ADD COLUMN refund_amount bigint NOT NULL DEFAULT 0;
ALTER TABLE wallet_purchases ADD COLUMN refund_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE wallet_purchases ADD COLUMN dispute_status text NULL;
ALTER TABLE wallet_purchases ADD COLUMN clawback_floor bigint NOT NULL DEFAULT 0;
ALTER TABLE wallet_purchases ADD COLUMN clawback_moves integer NOT NULL DEFAULT 0;
UPDATE wallet_purchases SET clawback_floor = clawback_requested, refund_tokens = clawback_requested WHERE clawback_requested > 0;

-- Which expiring lots a purchase's claw-backs took tokens from (by a claw-back, or by a return paying its debt), so a
-- give-back puts them back where they were, with their own expiry; the rest of what was taken never expires.
CREATE TABLE wallet_clawback_lots (
    checkout_session_id text   NOT NULL,
    lot_id              bigint NOT NULL,
    amount              bigint NOT NULL,
    CONSTRAINT pk_wallet_clawback_lots PRIMARY KEY (checkout_session_id, lot_id),
    CONSTRAINT fk_wallet_clawback_lots_purchase FOREIGN KEY (checkout_session_id) REFERENCES wallet_purchases (checkout_session_id),
    CONSTRAINT fk_wallet_clawback_lots_lot FOREIGN KEY (lot_id) REFERENCES wallet_lots (id),
    CONSTRAINT ck_wallet_clawback_lots_amount CHECK (amount >= 0)
);

-- Tokens a failed refund or a won chargeback gives back.
ALTER TABLE wallet_ledger DROP CONSTRAINT ck_wallet_ledger_kind;
ALTER TABLE wallet_ledger ADD CONSTRAINT ck_wallet_ledger_kind
    CHECK (kind IN ('purchase', 'debit', 'refund', 'grant', 'expiry', 'adjustment', 'return', 'refund_reversal'));
ALTER TABLE wallet_ledger DROP CONSTRAINT ck_wallet_ledger_sign;
ALTER TABLE wallet_ledger ADD CONSTRAINT ck_wallet_ledger_sign CHECK (
    (kind IN ('purchase', 'grant', 'return', 'refund_reversal') AND amount > 0)
    OR (kind IN ('debit', 'expiry') AND amount < 0)
    OR (kind = 'refund' AND amount <= 0)
    OR (kind = 'adjustment' AND amount <> 0));
