-- A pack's claw-back follows the state of its payment, not only its growth: a refund that fails (a closed card) or a
-- chargeback the merchant wins gives back what it took. The purchase keeps the latest state applied, so that messages
-- arriving in any order end in the same place:
--   refund_undone, refund_amount: the charge's refunds that failed or were canceled, and what is refunded — a message
--     applies only if (undone, amount) is greater (Payments: undone only grows, and between two values amount only grows);
--   dispute_status: 'open' while a chargeback stands, then how it ended ('won', 'lost', 'warning_closed'); a closed one
--     is never reopened by a late message.
-- Purchases already clawed back before this migration have no recorded state: they are never given back automatically
-- (restorable = false); an admin adjustment can.
ALTER TABLE wallet_purchases ADD COLUMN refund_undone integer NOT NULL DEFAULT 0;
ALTER TABLE wallet_purchases ADD COLUMN refund_amount bigint NOT NULL DEFAULT 0;
ALTER TABLE wallet_purchases ADD COLUMN dispute_status text NULL;
ALTER TABLE wallet_purchases ADD COLUMN restorable boolean NOT NULL DEFAULT true;
-- refund_tokens: what the refunds alone call for (the claw-back target while no chargeback stands).
ALTER TABLE wallet_purchases ADD COLUMN refund_tokens bigint NOT NULL DEFAULT 0;
-- How many times its claw-back target moved: the ledger's dedupe keys of a later move differ from an earlier one's.
ALTER TABLE wallet_purchases ADD COLUMN clawback_moves integer NOT NULL DEFAULT 0;
UPDATE wallet_purchases SET restorable = false, refund_tokens = clawback_requested WHERE clawback_requested > 0;

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
