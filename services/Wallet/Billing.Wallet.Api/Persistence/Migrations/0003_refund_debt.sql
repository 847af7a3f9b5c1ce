-- A refund claws back a pack's tokens; those already spent are its shortfall. Spent tokens can come back later (a
-- reservation's return), so the shortfall stays owed: returns pay it first (a 'refund' entry), before the user gets
-- the rest.
ALTER TABLE wallet_purchases ADD COLUMN clawback_outstanding bigint NOT NULL DEFAULT 0;
ALTER TABLE wallet_purchases ADD CONSTRAINT ck_wallet_purchases_clawback_outstanding CHECK (clawback_outstanding >= 0);

UPDATE wallet_purchases p
   SET clawback_outstanding = coalesce((SELECT sum(l.shortfall) FROM wallet_ledger l
                                        WHERE l.kind = 'refund' AND l.dedupe_key LIKE 'refund:' || p.checkout_session_id || '#%'), 0);
