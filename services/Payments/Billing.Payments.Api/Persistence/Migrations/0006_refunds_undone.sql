-- Refunds of the payment's charge that failed (a closed card) or were canceled: their money was not returned. Counted so
-- that a refund made again without an Idempotency-Key gets a new Stripe key instead of Stripe's answer for the failed one.
ALTER TABLE payments ADD COLUMN refunds_undone integer NOT NULL DEFAULT 0;
