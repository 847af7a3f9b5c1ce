-- Token-backed reservations: on a meter whose overage is `tokens`, a reservation the window cannot cover is paid with
-- purchased tokens, like a consume. The reserve claims the key first ('claimed'), Wallet debits the whole reservation
-- under the key `reservation:<id>`, then the reservation becomes active (or is refused). A commit, release or expiry
-- owes Wallet a return of the unused tokens: `return_due` stays true until Wallet has confirmed it, and the sweeper
-- retries it. A claim never confirmed (Usage stopped, Wallet unreachable) expires at its time like a reservation, and
-- owes the whole debit back (a return before the debit cancels the key in Wallet, so nothing can be taken later).

ALTER TABLE reservations DROP CONSTRAINT ck_reservations_status;
ALTER TABLE reservations ADD CONSTRAINT ck_reservations_status
    CHECK (status IN ('claimed', 'active', 'committed', 'released', 'expired', 'refused'));
ALTER TABLE reservations ADD COLUMN tokens bigint NOT NULL DEFAULT 0;           -- tokens the debit takes (0: not token-backed)
ALTER TABLE reservations ADD COLUMN tokens_per_unit bigint NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN tokens_to_return bigint NOT NULL DEFAULT 0; -- set by the settlement
ALTER TABLE reservations ADD COLUMN return_due boolean NOT NULL DEFAULT false;  -- Wallet has not confirmed the return yet
ALTER TABLE reservations ADD CONSTRAINT ck_reservations_tokens
    CHECK (tokens >= 0 AND tokens_to_return >= 0 AND tokens_to_return <= tokens AND (NOT return_due OR tokens_to_return > 0));

DROP INDEX ix_reservations_expiring;
CREATE INDEX ix_reservations_expiring ON reservations (expires_at) WHERE status IN ('active', 'claimed');
CREATE INDEX ix_reservations_return_due ON reservations (settled_at) WHERE return_due;

DROP FUNCTION usage_reserve(text, uuid, text, text, bigint, bigint, integer, timestamptz, timestamptz, bigint, integer, text, text,
                            timestamptz, timestamptz);

-- One reservation. Outcomes: 0 answered now, 1 a stored answer under the key, 2 the subscriber changed (decide again),
-- 3 a token-backed claim (new, or left by an earlier attempt): Wallet's debit of claim_tokens decides, under reservation_id.
CREATE FUNCTION usage_reserve(
    p_key text, p_id uuid, p_user text, p_meter text, p_quantity bigint, p_version bigint, p_mode integer,
    p_window_start timestamptz, p_window_end timestamptz, p_limit bigint, p_overage integer, p_event_name text,
    p_refusal text, p_expires_at timestamptz, p_now timestamptz, p_tokens_per_unit bigint,
    OUT outcome integer, OUT status_code integer, OUT answer text, OUT used_before bigint, OUT used_after bigint,
    OUT stored_user text, OUT stored_meter text, OUT stored_quantity bigint, OUT reservation_id uuid, OUT claim_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_version bigint;
    v_used    bigint;
    v_quota   bigint;
    v_source  text;
    v_status  text;
BEGIN
    SELECT r.status_code, r.answer::text, r.user_id, r.meter, r.quantity, r.reservation_id, r.status, r.tokens
      INTO status_code, answer, stored_user, stored_meter, stored_quantity, reservation_id, v_status, claim_tokens
      FROM reservations r WHERE r.idempotency_key = p_key;
    IF FOUND THEN
        outcome := CASE WHEN v_status = 'claimed' THEN 3 ELSE 1 END;
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

    IF p_mode = 0 AND v_used IS NULL AND p_overage = 1 THEN
        -- A tokens meter whose window cannot cover the reservation: the whole of it is paid with tokens.
        INSERT INTO reservations (reservation_id, idempotency_key, user_id, meter, quantity, status, status_code, answer, counted,
                                  window_start, window_end, limit_at, quota_part, tokens, tokens_per_unit, expires_at, created_at)
        VALUES (p_id, p_key, p_user, p_meter, p_quantity, 'claimed', 0, 'null'::json, false,
                p_window_start, p_window_end, p_limit, 0, p_quantity * greatest(1, p_tokens_per_unit), greatest(1, p_tokens_per_unit),
                p_expires_at, p_now)
        ON CONFLICT (idempotency_key) DO NOTHING;
        IF FOUND THEN
            outcome := 3;
            reservation_id := p_id;
            claim_tokens := p_quantity * greatest(1, p_tokens_per_unit);
            stored_user := p_user; stored_meter := p_meter; stored_quantity := p_quantity;
            RETURN;
        END IF;
    ELSIF p_mode = 2 OR (p_mode = 0 AND v_used IS NULL) THEN
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
        SELECT r.status_code, r.answer::text, r.user_id, r.meter, r.quantity, r.reservation_id, r.status, r.tokens
          INTO status_code, answer, stored_user, stored_meter, stored_quantity, reservation_id, v_status, claim_tokens
          FROM reservations r WHERE r.idempotency_key = p_key;
        outcome := CASE WHEN v_status = 'claimed' THEN 3 ELSE 1 END;
        RETURN;
    END IF;

    outcome := 0;
    reservation_id := p_id;
    used_after := v_used;
    used_before := v_used - p_quantity;
    stored_user := p_user; stored_meter := p_meter; stored_quantity := p_quantity;
END
$$;

-- Wallet's answer to a claim's debit: 200 (p_balance: the wallet after the debit) makes the reservation active with its
-- answer, anything else refuses it with p_answer. Only a claim still 'claimed' changes; the reservation's answer (new,
-- or the one already there: a claim that expired meanwhile answers 409) comes back either way.
CREATE FUNCTION usage_reservation_debited(p_id uuid, p_status_code integer, p_answer text, p_balance bigint,
    OUT status_code integer, OUT answer text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    UPDATE reservations r
       SET status = CASE WHEN p_status_code = 200 THEN 'active' ELSE 'refused' END,
           status_code = p_status_code,
           answer = CASE WHEN p_status_code <> 200 THEN p_answer::json ELSE json_build_object(
               'reservationId', r.reservation_id,
               'expiresAt', to_char(r.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'meter', r.meter, 'quantity', r.quantity, 'source', 'tokens',
               'remaining', CASE WHEN r.limit_at IS NULL THEN NULL ELSE greatest(0, r.limit_at - coalesce(
                   (SELECT c.used FROM usage_counters c WHERE c.user_id = r.user_id AND c.meter = r.meter AND c.window_start = r.window_start), 0)) END,
               'tokens', r.tokens, 'tokenBalance', p_balance) END,
           tokens = CASE WHEN p_status_code = 200 THEN r.tokens ELSE 0 END
     WHERE r.reservation_id = p_id AND r.status = 'claimed'
    RETURNING r.status_code, r.answer::text INTO status_code, answer;
    IF NOT FOUND THEN
        SELECT r.status_code, r.answer::text INTO status_code, answer FROM reservations r WHERE r.reservation_id = p_id;
    END IF;
END
$$;

DROP FUNCTION usage_settle(uuid, integer, bigint, timestamptz);

-- Commit (p_action 0, p_quantity used), release (1) or expire (2, the sweeper) a reservation; the first settlement
-- wins and is answered again. Outcome: ok, not_found, expired, committed, released, too_much, not_due. A token-backed
-- reservation's unused tokens are owed back (return_user, return_tokens), recorded as return_due in the same statement.
CREATE FUNCTION usage_settle(p_id uuid, p_action integer, p_quantity bigint, p_now timestamptz,
    OUT outcome text, OUT answer text, OUT return_user text, OUT return_tokens bigint)
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
    v_return   bigint := 0;
    v_late     boolean := false;
BEGIN
    SELECT * INTO r FROM reservations WHERE reservation_id = p_id AND status <> 'refused' FOR UPDATE;
    IF NOT FOUND OR (r.status = 'claimed' AND p_action <> 2) THEN
        outcome := 'not_found'; -- a claim's id was never given out
        RETURN;
    END IF;

    IF r.status = 'claimed' THEN
        IF r.expires_at > p_now THEN
            outcome := 'not_due';
            RETURN;
        END IF;
        -- Never confirmed: whatever Wallet took under the key goes back, and the key answers 409 from now on.
        answer := json_build_object('reservationId', r.reservation_id, 'committed', 0, 'released', r.quantity, 'remaining', NULL,
                                    'tokensSpent', 0, 'tokensReturned', r.tokens)::text;
        UPDATE reservations
           SET status = 'expired', committed = 0, settled_at = p_now, settle_answer = answer::json,
               status_code = 409,
               answer = json_build_object('type', 'https://billing.dev/problems/reservation-expired',
                                          'title', 'The reservation expired before it was confirmed.', 'status', 409,
                                          'detail', 'Purchased tokens could not be confirmed in time; nothing was spent. Reserve again with a new key.',
                                          'code', 'reservation_expired'),
               tokens_to_return = r.tokens, return_due = r.tokens > 0
         WHERE reservation_id = r.reservation_id;
        outcome := 'ok';
        return_user := r.user_id;
        return_tokens := r.tokens;
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

    IF r.tokens > 0 THEN
        v_return := r.tokens - v_commit * r.tokens_per_unit;
        answer := json_build_object('reservationId', r.reservation_id, 'committed', v_commit, 'released', v_release,
                                    'remaining', NULL, 'tokensSpent', v_commit * r.tokens_per_unit, 'tokensReturned', v_return)::text;
    ELSE
        answer := json_build_object('reservationId', r.reservation_id, 'committed', v_commit, 'released', v_release,
                                    'remaining', CASE WHEN r.limit_at IS NULL OR v_used IS NULL THEN NULL ELSE greatest(0, r.limit_at - v_used) END)::text;
    END IF;
    UPDATE reservations SET status = v_status, committed = v_commit, settled_at = p_now, settle_answer = answer::json,
                            tokens_to_return = v_return, return_due = v_return > 0
     WHERE reservation_id = r.reservation_id;

    IF v_commit > 0 THEN
        v_over := CASE WHEN r.event_name IS NULL THEN 0 ELSE greatest(0, v_commit - r.quota_part) END;
        v_source := CASE WHEN r.tokens > 0 THEN 'tokens' WHEN v_over > 0 THEN 'overage' WHEN r.limit_at IS NULL THEN 'unlimited' ELSE 'quota' END;
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

    IF v_return > 0 THEN
        return_user := r.user_id;
        return_tokens := v_return;
    END IF;
    outcome := CASE WHEN v_late THEN 'expired' ELSE 'ok' END;
END
$$;
