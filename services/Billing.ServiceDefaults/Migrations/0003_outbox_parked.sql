-- Rows the relay can never publish (their message type no longer resolves, or their payload no longer deserialises)
-- are set aside with their error instead of blocking every later row of the outbox. They stay for an operator.
ALTER TABLE outbox ADD COLUMN parked_at timestamptz NULL;

CREATE INDEX ix_outbox_parked ON outbox (position) WHERE parked_at IS NOT NULL;
