-- Transactional outbox and consumer inbox (ARCHITECTURE.md rule 2). Every service's database has both.
CREATE TABLE outbox (
    position     bigint GENERATED ALWAYS AS IDENTITY,
    id           uuid        NOT NULL,
    message_type text        NOT NULL,
    payload      jsonb       NOT NULL,
    trace_parent text        NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text        NULL,
    CONSTRAINT pk_outbox PRIMARY KEY (position),
    CONSTRAINT ux_outbox_id UNIQUE (id)
);

CREATE INDEX ix_outbox_unsent ON outbox (position) WHERE sent_at IS NULL;

CREATE TABLE inbox (
    message_id   uuid        NOT NULL,
    consumer     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_inbox PRIMARY KEY (message_id, consumer)
);
