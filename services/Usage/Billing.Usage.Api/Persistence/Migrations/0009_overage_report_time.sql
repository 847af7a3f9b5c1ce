-- The time a billed-overage row's meter event carries, fixed before it is first sent (its spend's time, or the send time
-- when that spend's period was already invoiced): every retry sends the same body under the same idempotency key.
ALTER TABLE usage_overage ADD COLUMN report_at timestamptz NULL;
