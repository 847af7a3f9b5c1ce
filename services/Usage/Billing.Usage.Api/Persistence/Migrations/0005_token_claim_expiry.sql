-- A consume paid with tokens claims its key (status_code 0) before Wallet debits. A claim nobody finishes (Wallet
-- timed out after debiting, and the caller never retried) would leave tokens taken for a spend never allowed: the
-- sweeper finds such claims by this index (claims only: it costs the hot path nothing), asks Wallet to give back
-- whatever it took under the key, and records the consume as expired.
CREATE INDEX IF NOT EXISTS ix_consumptions_token_claims ON consumptions (created_at) WHERE status_code = 0;
