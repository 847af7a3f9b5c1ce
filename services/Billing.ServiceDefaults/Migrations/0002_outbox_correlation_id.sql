-- The correlation id of the request (or consumed message) that wrote the row; the relay sends it as X-Correlation-Id.
ALTER TABLE outbox ADD COLUMN correlation_id text NULL;
