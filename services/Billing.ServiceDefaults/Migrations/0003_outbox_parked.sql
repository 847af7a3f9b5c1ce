-- Rows set aside for good by an operator (a message no release can publish): the relay skips a row whose parked_at is
-- set. The relay itself never parks a row: one it cannot publish (a type it does not know, a payload it cannot read)
-- is skipped by that process only, so that a replica of a newer release can still publish it.
ALTER TABLE outbox ADD COLUMN parked_at timestamptz NULL;

CREATE INDEX ix_outbox_parked ON outbox (position) WHERE parked_at IS NOT NULL;
