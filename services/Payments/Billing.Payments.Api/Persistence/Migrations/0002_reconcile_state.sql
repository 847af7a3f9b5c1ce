-- Where reconciliation with Stripe's event list got to (one row).
CREATE TABLE reconcile_state (
    id           integer     NOT NULL,
    cursor_at    timestamptz NULL,
    last_run_at  timestamptz NULL,
    last_scanned integer     NOT NULL DEFAULT 0,
    last_found   integer     NOT NULL DEFAULT 0,
    CONSTRAINT pk_reconcile_state PRIMARY KEY (id),
    CONSTRAINT ck_reconcile_state_single CHECK (id = 1)
);

INSERT INTO reconcile_state (id) VALUES (1);
