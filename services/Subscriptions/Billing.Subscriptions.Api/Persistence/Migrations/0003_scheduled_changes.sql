-- The change Stripe makes when the current period ends (a downgrade), as Payments last read it; null when none is
-- scheduled. Shown to the user as scheduledChange in GET /api/subscriptions/me.
ALTER TABLE subscriptions
    ADD COLUMN scheduled_plan_id        text        NULL,
    ADD COLUMN scheduled_price_id       text        NULL,
    ADD COLUMN scheduled_interval       text        NULL,
    ADD COLUMN scheduled_interval_count integer     NULL,
    ADD COLUMN scheduled_at             timestamptz NULL;
