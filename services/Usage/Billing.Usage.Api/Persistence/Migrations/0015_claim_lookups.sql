-- The token-paid path's and the commit's lookups by key, as functions with sequential scans off (as migration 0014
-- did for the spend functions): sent as plain statements, Npgsql prepares them and PostgreSQL may keep a plan made
-- while the table was tiny (a new deployment) — a scan of the whole table for every lookup until the next ANALYZE.

-- A token-paid consume's claim: its price fixed by the first attempt (an UPDATE, so that a concurrent retry waits for the
-- first one's price), with the consumption's id, when it was claimed and the window's used count.
CREATE FUNCTION usage_claim_price(p_key text, p_window_start timestamptz, p_tokens bigint)
RETURNS TABLE (consumption_id uuid, used bigint, created_at timestamptz, tokens bigint)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE consumptions c SET claim_tokens = coalesce(c.claim_tokens, p_tokens)
     WHERE c.idempotency_key = p_key
    RETURNING c.consumption_id,
              coalesce((SELECT u.used FROM usage_counters u
                         WHERE u.user_id = c.user_id AND u.meter = c.meter AND u.window_start = p_window_start), 0::bigint),
              c.created_at, c.claim_tokens;
END
$$;

-- A claim's row, locked for the caller's transaction: its status (0 while Wallet has not answered) and claim time.
CREATE FUNCTION usage_lock_claim(p_key text)
RETURNS TABLE (status_code integer, created_at timestamptz)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT c.status_code, c.created_at FROM consumptions c WHERE c.idempotency_key = p_key FOR UPDATE;
END
$$;

-- Whose reservation it is, on which meter and window.
CREATE FUNCTION usage_reservation_owner(p_id uuid)
RETURNS TABLE (user_id text, meter text, window_start timestamptz)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT r.user_id, r.meter, r.window_start FROM reservations r WHERE r.reservation_id = p_id;
END
$$;
