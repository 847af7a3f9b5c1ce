-- Attempts that failed for a reason a retry cannot be expected to heal (Stripe answered something unusable, a bug, bad
-- data). Only these count towards parking an event as failed; while Stripe is unreachable, rate limiting or answering
-- 5xx, an event keeps being retried at the longest back-off, its attempts and last error visible to admins.
ALTER TABLE stripe_events ADD COLUMN failures integer NOT NULL DEFAULT 0;
