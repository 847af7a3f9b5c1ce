-- The hot path as functions: one call is one consume (or reserve, commit, release), so that a group-commit writer
-- can put up to 64 of them in one batch and one transaction, and a refused spend is an answer, never an error.

-- Every change of a subscriber bumps its version; a consume decided on an older version is refused as "stale" and
-- decided again, so the service may keep subscribers in memory without ever spending on an outdated plan.
ALTER TABLE usage_subjects ADD COLUMN version bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_subjects ADD COLUMN stripe_customer_id text NULL;

CREATE FUNCTION usage_subjects_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER tr_usage_subjects_version BEFORE UPDATE ON usage_subjects
    FOR EACH ROW EXECUTE FUNCTION usage_subjects_bump_version();

-- Billed overage, written in the spend's transaction and reported to Stripe Billing Meter events by a background
-- reporter; consumption_id is Stripe's identifier, so a retry cannot bill twice.
CREATE TABLE usage_overage (
    consumption_id  uuid        NOT NULL,
    user_id         text        NOT NULL,
    meter           text        NOT NULL,
    event_name      text        NOT NULL,
    quantity        bigint      NOT NULL,
    occurred_at     timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text        NULL,
    reported_at     timestamptz NULL,
    CONSTRAINT pk_usage_overage PRIMARY KEY (consumption_id),
    CONSTRAINT ck_usage_overage_quantity CHECK (quantity > 0)
);

CREATE INDEX ix_usage_overage_pending ON usage_overage (next_attempt_at) WHERE reported_at IS NULL;

-- Reservations for streaming calls. The reserved quantity is in the window's counter from the start; commit gives
-- back what was not used, release and expiry give back everything.
CREATE TABLE reservations (
    reservation_id  uuid        NOT NULL,
    idempotency_key text        NOT NULL,
    user_id         text        NOT NULL,
    meter           text        NOT NULL,
    quantity        bigint      NOT NULL,
    status          text        NOT NULL,
    status_code     integer     NOT NULL,
    answer          json        NOT NULL, -- the first answer to the reserve, replayed under the same key
    counted         boolean     NOT NULL,
    window_start    timestamptz NULL,
    window_end      timestamptz NULL,
    limit_at        bigint      NULL,     -- the limit when reserved (null: unlimited)
    quota_part      bigint      NOT NULL, -- units covered by the window; the rest is billed overage (bill meters)
    event_name      text        NULL,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    committed       bigint      NULL,
    settled_at      timestamptz NULL,
    settle_answer   json        NULL,
    CONSTRAINT pk_reservations PRIMARY KEY (reservation_id),
    CONSTRAINT ux_reservations_idempotency_key UNIQUE (idempotency_key),
    CONSTRAINT ck_reservations_status CHECK (status IN ('active', 'committed', 'released', 'expired', 'refused')),
    CONSTRAINT ck_reservations_quantity CHECK (quantity > 0 AND (committed IS NULL OR committed BETWEEN 0 AND quantity))
);

CREATE INDEX ix_reservations_expiring ON reservations (expires_at) WHERE status = 'active';

-- One consume. Outcomes: 0 answered now, 1 a stored answer under the key (replay), 2 the subscriber changed since
-- p_version (decide again), 3 the window cannot cover a token meter: the key is claimed, Wallet's debit decides.
-- p_mode 0 spends from the window; p_mode 1 records p_status/p_answer without spending (refusals, unlimited groups).
-- p_overage: 0 block (p_answer is the 402 to record), 1 tokens, 2 bill (allowed past the limit, overage recorded).
CREATE FUNCTION usage_consume(
    p_key text, p_id uuid, p_user text, p_meter text, p_quantity bigint, p_version bigint, p_mode integer,
    p_window_start timestamptz, p_window_end timestamptz, p_limit bigint, p_overage integer, p_event_name text,
    p_source text, p_status integer, p_answer text, p_now timestamptz,
    OUT outcome integer, OUT status_code integer, OUT answer text, OUT used_before bigint, OUT used_after bigint,
    OUT stored_user text, OUT stored_meter text, OUT stored_quantity bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_version bigint;
    v_used    bigint;
    v_balance bigint;
    v_source  text;
    v_over    bigint := 0;
    v_rows    integer;
BEGIN
    SELECT c.status_code, c.answer::text, c.user_id, c.meter, c.quantity
      INTO status_code, answer, stored_user, stored_meter, stored_quantity
      FROM consumptions c WHERE c.idempotency_key = p_key;
    IF FOUND THEN
        outcome := CASE WHEN status_code = 0 THEN 3 ELSE 1 END;
        RETURN;
    END IF;

    SELECT s.version INTO v_version FROM usage_subjects s WHERE s.user_id = p_user;
    IF coalesce(v_version, -1) <> p_version THEN
        outcome := 2;
        RETURN;
    END IF;

    IF p_mode = 1 THEN
        IF p_status = 200 THEN
            SELECT b.balance INTO v_balance FROM token_balances b WHERE b.user_id = p_user;
            p_answer := json_build_object('allowed', true, 'source', p_source, 'remaining', NULL,
                                          'tokenBalance', coalesce(v_balance, 0), 'consumptionId', p_id)::text;
        END IF;
        INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, window_start, created_at)
        VALUES (p_key, p_id, p_user, p_meter, p_quantity, p_status = 200, CASE WHEN p_status = 200 THEN p_source END, p_status, p_answer::json, NULL, p_now)
        ON CONFLICT (idempotency_key) DO NOTHING;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        IF v_rows = 0 THEN
            SELECT 1, c.status_code, c.answer::text, c.user_id, c.meter, c.quantity
              INTO outcome, status_code, answer, stored_user, stored_meter, stored_quantity
              FROM consumptions c WHERE c.idempotency_key = p_key;
            IF status_code = 0 THEN outcome := 3; END IF;
            RETURN;
        END IF;
        outcome := 0; status_code := p_status; answer := p_answer;
        RETURN;
    END IF;

    IF p_limit IS NULL OR p_overage = 2 THEN
        INSERT INTO usage_counters AS c (user_id, meter, window_start, window_end, used)
        VALUES (p_user, p_meter, p_window_start, p_window_end, p_quantity)
        ON CONFLICT (user_id, meter, window_start) DO UPDATE SET used = c.used + EXCLUDED.used
        RETURNING c.used INTO v_used;
    ELSE
        INSERT INTO usage_counters AS c (user_id, meter, window_start, window_end, used)
        SELECT p_user, p_meter, p_window_start, p_window_end, p_quantity WHERE p_quantity <= p_limit
        ON CONFLICT (user_id, meter, window_start) DO UPDATE SET used = c.used + EXCLUDED.used
        WHERE c.used + EXCLUDED.used <= p_limit
        RETURNING c.used INTO v_used;
    END IF;

    IF v_used IS NULL AND p_overage = 1 THEN
        -- Purchased tokens pay for it (no split: the whole quantity). Claim the key until Wallet has answered.
        INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, window_start, created_at)
        VALUES (p_key, p_id, p_user, p_meter, p_quantity, false, NULL, 0, '{}'::json, p_window_start, p_now)
        ON CONFLICT (idempotency_key) DO NOTHING;
        SELECT c.status_code, c.answer::text, c.user_id, c.meter, c.quantity
          INTO status_code, answer, stored_user, stored_meter, stored_quantity
          FROM consumptions c WHERE c.idempotency_key = p_key;
        outcome := CASE WHEN status_code = 0 THEN 3 ELSE 1 END;
        RETURN;
    END IF;

    IF v_used IS NULL THEN
        status_code := 402;
        answer := p_answer;
    ELSE
        v_source := CASE WHEN p_limit IS NULL THEN 'unlimited' ELSE 'quota' END;
        IF p_overage = 2 AND p_limit IS NOT NULL THEN
            v_over := least(p_quantity, greatest(0, v_used - p_limit));
            IF v_over > 0 THEN v_source := 'overage'; END IF;
        END IF;
        SELECT b.balance INTO v_balance FROM token_balances b WHERE b.user_id = p_user;
        status_code := 200;
        answer := json_build_object('allowed', true, 'source', v_source,
                                    'remaining', CASE WHEN p_limit IS NULL THEN NULL ELSE greatest(0, p_limit - v_used) END,
                                    'tokenBalance', coalesce(v_balance, 0), 'consumptionId', p_id)::text;
    END IF;

    INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, window_start, created_at)
    VALUES (p_key, p_id, p_user, p_meter, p_quantity, status_code = 200, v_source, status_code, answer::json, p_window_start, p_now)
    ON CONFLICT (idempotency_key) DO NOTHING;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows = 0 THEN
        -- Another request under the same key committed first: give the spend back and answer as it did.
        IF v_used IS NOT NULL THEN
            UPDATE usage_counters c SET used = c.used - p_quantity
             WHERE c.user_id = p_user AND c.meter = p_meter AND c.window_start = p_window_start;
        END IF;
        SELECT 1, c.status_code, c.answer::text, c.user_id, c.meter, c.quantity
          INTO outcome, status_code, answer, stored_user, stored_meter, stored_quantity
          FROM consumptions c WHERE c.idempotency_key = p_key;
        IF status_code = 0 THEN outcome := 3; END IF;
        RETURN;
    END IF;

    IF v_over > 0 THEN
        INSERT INTO usage_overage (consumption_id, user_id, meter, event_name, quantity, occurred_at, next_attempt_at)
        VALUES (p_id, p_user, p_meter, p_event_name, v_over, p_now, p_now);
    END IF;
    outcome := 0;
    used_after := v_used;
    used_before := v_used - p_quantity;
    stored_user := p_user; stored_meter := p_meter; stored_quantity := p_quantity;
END
$$;

-- Finishes a consume whose key was claimed for Wallet's debit: records Wallet's answer once. Returns the stored answer.
CREATE FUNCTION usage_settle_tokens(p_key text, p_status integer, p_answer text,
    OUT status_code integer, OUT answer text)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE consumptions c
       SET status_code = p_status, allowed = p_status = 200, source = CASE WHEN p_status = 200 THEN 'tokens' END, answer = p_answer::json
     WHERE c.idempotency_key = p_key AND c.status_code = 0;
    SELECT c.status_code, c.answer::text INTO status_code, answer FROM consumptions c WHERE c.idempotency_key = p_key;
END
$$;

-- One reservation. Outcomes as usage_consume's 0, 1 and 2. p_mode 0 counts against the window, 1 allows without
-- counting (unlimited groups), 2 records the refusal p_refusal. For a block or tokens meter the whole quantity must
-- fit in the window (token-backed reservations are not offered); a bill meter may go past it (overage at commit).
CREATE FUNCTION usage_reserve(
    p_key text, p_id uuid, p_user text, p_meter text, p_quantity bigint, p_version bigint, p_mode integer,
    p_window_start timestamptz, p_window_end timestamptz, p_limit bigint, p_overage integer, p_event_name text,
    p_refusal text, p_expires_at timestamptz, p_now timestamptz,
    OUT outcome integer, OUT status_code integer, OUT answer text, OUT used_before bigint, OUT used_after bigint,
    OUT stored_user text, OUT stored_meter text, OUT stored_quantity bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_version bigint;
    v_used    bigint;
    v_quota   bigint;
    v_source  text;
BEGIN
    SELECT r.status_code, r.answer::text, r.user_id, r.meter, r.quantity
      INTO status_code, answer, stored_user, stored_meter, stored_quantity
      FROM reservations r WHERE r.idempotency_key = p_key;
    IF FOUND THEN
        outcome := 1;
        RETURN;
    END IF;

    SELECT s.version INTO v_version FROM usage_subjects s WHERE s.user_id = p_user;
    IF coalesce(v_version, -1) <> p_version THEN
        outcome := 2;
        RETURN;
    END IF;

    IF p_mode = 0 THEN
        IF p_limit IS NULL OR p_overage = 2 THEN
            INSERT INTO usage_counters AS c (user_id, meter, window_start, window_end, used)
            VALUES (p_user, p_meter, p_window_start, p_window_end, p_quantity)
            ON CONFLICT (user_id, meter, window_start) DO UPDATE SET used = c.used + EXCLUDED.used
            RETURNING c.used INTO v_used;
        ELSE
            INSERT INTO usage_counters AS c (user_id, meter, window_start, window_end, used)
            SELECT p_user, p_meter, p_window_start, p_window_end, p_quantity WHERE p_quantity <= p_limit
            ON CONFLICT (user_id, meter, window_start) DO UPDATE SET used = c.used + EXCLUDED.used
            WHERE c.used + EXCLUDED.used <= p_limit
            RETURNING c.used INTO v_used;
        END IF;
    END IF;

    IF p_mode = 2 OR (p_mode = 0 AND v_used IS NULL) THEN
        INSERT INTO reservations (reservation_id, idempotency_key, user_id, meter, quantity, status, status_code, answer, counted, quota_part, expires_at, created_at)
        VALUES (p_id, p_key, p_user, p_meter, p_quantity, 'refused', 402, p_refusal::json, false, 0, p_expires_at, p_now)
        ON CONFLICT (idempotency_key) DO NOTHING;
        status_code := 402;
        answer := p_refusal;
    ELSE
        v_quota := CASE WHEN p_mode = 1 OR p_limit IS NULL THEN p_quantity ELSE least(p_quantity, greatest(0, p_limit - (v_used - p_quantity))) END;
        v_source := CASE WHEN p_mode = 1 OR p_limit IS NULL THEN 'unlimited' WHEN v_quota < p_quantity THEN 'overage' ELSE 'quota' END;
        status_code := 200;
        answer := json_build_object('reservationId', p_id,
                                    'expiresAt', to_char(p_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                                    'meter', p_meter, 'quantity', p_quantity, 'source', v_source,
                                    'remaining', CASE WHEN p_mode = 1 OR p_limit IS NULL THEN NULL ELSE greatest(0, p_limit - v_used) END)::text;
        INSERT INTO reservations (reservation_id, idempotency_key, user_id, meter, quantity, status, status_code, answer, counted,
                                  window_start, window_end, limit_at, quota_part, event_name, expires_at, created_at)
        VALUES (p_id, p_key, p_user, p_meter, p_quantity, 'active', 200, answer::json, p_mode = 0,
                p_window_start, p_window_end, CASE WHEN p_mode = 1 THEN NULL ELSE p_limit END, v_quota,
                CASE WHEN p_overage = 2 THEN p_event_name END, p_expires_at, p_now)
        ON CONFLICT (idempotency_key) DO NOTHING;
    END IF;

    IF NOT FOUND THEN
        -- Another request under the same key committed first.
        IF v_used IS NOT NULL THEN
            UPDATE usage_counters c SET used = c.used - p_quantity
             WHERE c.user_id = p_user AND c.meter = p_meter AND c.window_start = p_window_start;
        END IF;
        SELECT 1, r.status_code, r.answer::text, r.user_id, r.meter, r.quantity
          INTO outcome, status_code, answer, stored_user, stored_meter, stored_quantity
          FROM reservations r WHERE r.idempotency_key = p_key;
        RETURN;
    END IF;

    outcome := 0;
    used_after := v_used;
    used_before := v_used - p_quantity;
    stored_user := p_user; stored_meter := p_meter; stored_quantity := p_quantity;
END
$$;

-- Commit (p_action 0, p_quantity used), release (1) or expire (2, the sweeper) a reservation; the first settlement
-- wins and is answered again. Outcome: ok, not_found, expired, committed, released, too_much, not_due.
CREATE FUNCTION usage_settle(p_id uuid, p_action integer, p_quantity bigint, p_now timestamptz,
    OUT outcome text, OUT answer text)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    r          reservations%ROWTYPE;
    v_commit   bigint;
    v_release  bigint;
    v_used     bigint;
    v_over     bigint;
    v_status   text;
    v_source   text;
    v_late     boolean := false;
BEGIN
    SELECT * INTO r FROM reservations WHERE reservation_id = p_id AND status <> 'refused' FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN;
    END IF;

    IF r.status <> 'active' THEN
        answer := r.settle_answer::text;
        outcome := CASE
            WHEN p_action = 0 AND r.status = 'committed' THEN 'ok'
            WHEN p_action = 0 THEN r.status
            WHEN p_action = 1 AND r.status = 'committed' THEN 'committed'
            ELSE 'ok' END;
        RETURN;
    END IF;

    IF p_action = 2 AND r.expires_at > p_now THEN
        outcome := 'not_due';
        RETURN;
    END IF;
    IF p_action = 0 AND p_quantity > r.quantity THEN
        outcome := 'too_much';
        RETURN;
    END IF;

    IF p_action = 0 AND r.expires_at <= p_now THEN
        p_action := 2; -- too late to commit: the reservation expires now, and the commit is refused
        v_late := true;
    END IF;
    v_commit := CASE WHEN p_action = 0 THEN p_quantity ELSE 0 END;
    v_release := r.quantity - v_commit;
    v_status := CASE p_action WHEN 0 THEN 'committed' WHEN 1 THEN 'released' ELSE 'expired' END;

    IF r.counted THEN
        UPDATE usage_counters c SET used = c.used - v_release
         WHERE c.user_id = r.user_id AND c.meter = r.meter AND c.window_start = r.window_start
        RETURNING c.used INTO v_used;
    END IF;

    answer := json_build_object('reservationId', r.reservation_id, 'committed', v_commit, 'released', v_release,
                                'remaining', CASE WHEN r.limit_at IS NULL OR v_used IS NULL THEN NULL ELSE greatest(0, r.limit_at - v_used) END)::text;
    UPDATE reservations SET status = v_status, committed = v_commit, settled_at = p_now, settle_answer = answer::json
     WHERE reservation_id = r.reservation_id;

    IF v_commit > 0 THEN
        v_over := CASE WHEN r.event_name IS NULL THEN 0 ELSE greatest(0, v_commit - r.quota_part) END;
        v_source := CASE WHEN v_over > 0 THEN 'overage' WHEN r.limit_at IS NULL THEN 'unlimited' ELSE 'quota' END;
        -- The committed amount is usage like a consume's: it shows in the history.
        INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, window_start, created_at)
        VALUES ('reservation:' || r.reservation_id, r.reservation_id, r.user_id, r.meter, v_commit, true, v_source, 200, answer::json, r.window_start, p_now)
        ON CONFLICT DO NOTHING;
        IF v_over > 0 THEN
            INSERT INTO usage_overage (consumption_id, user_id, meter, event_name, quantity, occurred_at, next_attempt_at)
            VALUES (r.reservation_id, r.user_id, r.meter, r.event_name, v_over, p_now, p_now)
            ON CONFLICT DO NOTHING;
        END IF;
    END IF;

    outcome := CASE WHEN v_late THEN 'expired' ELSE 'ok' END;
END
$$;
