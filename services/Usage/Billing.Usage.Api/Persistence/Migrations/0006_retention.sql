-- Retention. Every spend appends a row to consumptions, whose primary key (the idempotency key, random) is probed by
-- every consume: left to grow, it outgrows memory and makes the hot path slower month after month. Rows older than
-- Usage:RetentionDays (35 by default) are retired in batches: allowed quantities roll up into per-day totals
-- (usage_daily, which the history reads beyond the retention) in the same statement that deletes them. So an
-- idempotency key is remembered for the retention (a retry after that is a new consume). Unfinished token claims
-- (status_code 0) are never retired here: the claim expiry finishes them first.

-- Rows are appended in time order, so a BRIN index finds old ones for almost nothing per insert.
CREATE INDEX IF NOT EXISTS ix_consumptions_created_at ON consumptions USING brin (created_at);

CREATE TABLE usage_daily (
    user_id  text   NOT NULL,
    meter    text   NOT NULL,
    day      date   NOT NULL, -- UTC
    quantity bigint NOT NULL,
    CONSTRAINT pk_usage_daily PRIMARY KEY (user_id, day, meter),
    CONSTRAINT ck_usage_daily_quantity CHECK (quantity >= 0)
);

-- Retires up to p_limit consumptions created before p_before; returns how many.
CREATE FUNCTION usage_retire(p_before timestamptz, p_limit integer) RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM consumptions c
         WHERE c.ctid = ANY (ARRAY(SELECT ctid FROM consumptions WHERE created_at < p_before AND status_code <> 0 LIMIT p_limit))
        RETURNING c.user_id, c.meter, c.quantity, c.allowed, c.created_at
    ), rolled AS (
        INSERT INTO usage_daily AS u (user_id, meter, day, quantity)
        SELECT user_id, meter, (created_at AT TIME ZONE 'UTC')::date, sum(quantity)
          FROM gone WHERE allowed GROUP BY 1, 2, 3
        ON CONFLICT (user_id, day, meter) DO UPDATE SET quantity = u.quantity + EXCLUDED.quantity
    )
    SELECT count(*)::integer FROM gone;
$$;
