-- The tokens a token-paid consume costs, fixed by its first attempt to debit: a retry under the same key after a plan
-- change (another tokensPerUnit) asks Wallet for the same amount, which Wallet — holding the first debit under the
-- claim's key — would otherwise refuse as another debit. Null on every other row (no rewrite of the table).
ALTER TABLE consumptions ADD COLUMN claim_tokens bigint NULL;
