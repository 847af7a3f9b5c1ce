-- Admin refunds sent with an Idempotency-Key header. The first request with a key fixes what the key refunds (amount,
-- reason, who asked); a retry with the same key sends Stripe the same request under the same Stripe idempotency key,
-- however the payment's refunded amount changed meanwhile, so it can never refund twice. Once Stripe has answered, the
-- refund's id is kept: a retry after Stripe forgot the idempotency key (24 hours) is answered with that refund.
CREATE TABLE refund_requests (
    payment_id      text        NOT NULL,
    idempotency_key text        NOT NULL,
    amount          bigint      NOT NULL,
    reason          text        NOT NULL,
    requested_by    text        NOT NULL,
    refund_id       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_refund_requests PRIMARY KEY (payment_id, idempotency_key),
    CONSTRAINT fk_refund_requests_payment FOREIGN KEY (payment_id) REFERENCES payments (id),
    CONSTRAINT ck_refund_requests_amount CHECK (amount > 0)
);
