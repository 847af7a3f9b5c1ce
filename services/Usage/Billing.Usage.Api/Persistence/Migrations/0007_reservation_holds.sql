-- Reservation holds. A reservation counts its quantity in usage_counters.used at once (so a `block` window cannot be
-- overspent by what streams are still producing), and gives back what it did not use when it is settled. For `bill`
-- meters that made a hold look like spending: consumes made while a reservation was open were billed as overage even
-- when the reservation was later released and the window ended under its limit. The counter now also records how
-- much of `used` is only held (`held`); overage — of a consume and of a reservation's commit — is what the spent part
-- (used - held) passes the limit by. Spent only ever grows within a window (a settlement moves a reservation's
-- committed part from held to spent and drops the rest), so the overage billed adds up to max(0, spent - limit).
-- Everything else (block checks, remaining, QuotaLow/QuotaExhausted) still counts holds, as before.

ALTER TABLE usage_counters ADD COLUMN held bigint NOT NULL DEFAULT 0;

UPDATE usage_counters c SET held = h.quantity
  FROM (SELECT user_id, meter, window_start, SUM(quantity) AS quantity FROM reservations
         WHERE status = 'active' AND counted GROUP BY user_id, meter, window_start) h
 WHERE c.user_id = h.user_id AND c.meter = h.meter AND c.window_start = h.window_start;

CREATE OR REPLACE FUNCTION usage_consume_many(
    p_keys text[], p_ids uuid[], p_users text[], p_meters text[], p_quantities bigint[], p_versions bigint[],
    p_modes integer[], p_window_starts timestamptz[], p_window_ends timestamptz[], p_limits bigint[],
    p_overages integer[], p_event_names text[], p_sources text[], p_statuses integer[], p_answers text[],
    p_nows timestamptz[])
RETURNS TABLE (ordinal integer, outcome integer, status_code integer, answer text, used_before bigint, used_after bigint,
               stored_user text, stored_meter text, stored_quantity bigint)
LANGUAGE plpgsql AS $$
DECLARE
    e         record;
    v_version bigint;
    v_balance bigint;
    v_found   boolean;
    v_used    bigint;
    v_held    bigint;
    v_source  text;
    v_over    bigint;
    v_answer  text;
    v_rows    integer;
BEGIN
    FOR e IN
        SELECT * FROM unnest(p_keys, p_ids, p_users, p_meters, p_quantities, p_versions, p_modes, p_window_starts,
                             p_window_ends, p_limits, p_overages, p_event_names, p_sources, p_statuses, p_answers, p_nows)
                      WITH ORDINALITY AS t(key, id, user_id, meter, quantity, version, mode, window_start, window_end,
                                           quota_limit, overage, event_name, source, status, answer, now, ord)
    LOOP
        ordinal := e.ord;
        outcome := NULL; status_code := NULL; answer := NULL; used_before := NULL; used_after := NULL;
        stored_user := NULL; stored_meter := NULL; stored_quantity := NULL;

        -- The key's first answer, the subscriber's version and the token balance: one statement.
        SELECT c.idempotency_key IS NOT NULL, c.status_code, c.answer::text, c.user_id, c.meter, c.quantity,
               (SELECT s.version FROM usage_subjects s WHERE s.user_id = e.user_id),
               (SELECT b.balance FROM token_balances b WHERE b.user_id = e.user_id)
          INTO v_found, status_code, answer, stored_user, stored_meter, stored_quantity, v_version, v_balance
          FROM (SELECT 1) one LEFT JOIN consumptions c ON c.idempotency_key = e.key;
        IF v_found THEN
            outcome := CASE WHEN status_code = 0 THEN 3 ELSE 1 END;
            RETURN NEXT;
            CONTINUE;
        END IF;
        status_code := NULL; answer := NULL; stored_user := NULL; stored_meter := NULL; stored_quantity := NULL;

        IF coalesce(v_version, -1) <> e.version THEN
            outcome := 2;
            RETURN NEXT;
            CONTINUE;
        END IF;

        v_used := NULL;
        v_held := 0;
        v_source := NULL;
        v_over := 0;
        v_answer := e.answer;

        IF e.mode = 1 THEN
            IF e.status = 200 THEN
                v_source := e.source;
                v_answer := json_build_object('allowed', true, 'source', e.source, 'remaining', NULL,
                                              'tokenBalance', coalesce(v_balance, 0), 'consumptionId', e.id)::text;
            END IF;
            status_code := e.status;
        ELSE
            IF e.quota_limit IS NULL OR e.overage = 2 THEN
                INSERT INTO usage_counters AS c (user_id, meter, window_start, window_end, used)
                VALUES (e.user_id, e.meter, e.window_start, e.window_end, e.quantity)
                ON CONFLICT (user_id, meter, window_start) DO UPDATE SET used = c.used + EXCLUDED.used
                RETURNING c.used, c.held INTO v_used, v_held;
            ELSE
                INSERT INTO usage_counters AS c (user_id, meter, window_start, window_end, used)
                SELECT e.user_id, e.meter, e.window_start, e.window_end, e.quantity WHERE e.quantity <= e.quota_limit
                ON CONFLICT (user_id, meter, window_start) DO UPDATE SET used = c.used + EXCLUDED.used
                WHERE c.used + EXCLUDED.used <= e.quota_limit
                RETURNING c.used INTO v_used;
            END IF;

            IF v_used IS NULL AND e.overage = 1 THEN
                -- Purchased tokens pay for it (no split: the whole quantity). Claim the key until Wallet has answered.
                INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, window_start, created_at)
                VALUES (e.key, e.id, e.user_id, e.meter, e.quantity, false, NULL, 0, '{}'::json, e.window_start, e.now)
                ON CONFLICT (idempotency_key) DO NOTHING;
                SELECT c.status_code, c.answer::text, c.user_id, c.meter, c.quantity
                  INTO status_code, answer, stored_user, stored_meter, stored_quantity
                  FROM consumptions c WHERE c.idempotency_key = e.key;
                outcome := CASE WHEN status_code = 0 THEN 3 ELSE 1 END;
                RETURN NEXT;
                CONTINUE;
            END IF;

            IF v_used IS NULL THEN
                status_code := 402;
            ELSE
                v_source := CASE WHEN e.quota_limit IS NULL THEN 'unlimited' ELSE 'quota' END;
                IF e.overage = 2 AND e.quota_limit IS NOT NULL THEN
                    -- Overage is what is spent past the limit; quantities held by reservations are not spent (yet).
                    v_over := least(e.quantity, greatest(0, v_used - v_held - e.quota_limit));
                    IF v_over > 0 THEN v_source := 'overage'; END IF;
                END IF;
                status_code := 200;
                v_answer := json_build_object('allowed', true, 'source', v_source,
                                              'remaining', CASE WHEN e.quota_limit IS NULL THEN NULL ELSE greatest(0, e.quota_limit - v_used) END,
                                              'tokenBalance', coalesce(v_balance, 0), 'consumptionId', e.id)::text;
            END IF;
        END IF;

        INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, window_start, created_at)
        VALUES (e.key, e.id, e.user_id, e.meter, e.quantity, status_code = 200, CASE WHEN status_code = 200 THEN v_source END,
                status_code, v_answer::json, CASE WHEN e.mode = 1 THEN NULL ELSE e.window_start END, e.now)
        ON CONFLICT (idempotency_key) DO NOTHING;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        IF v_rows = 0 THEN
            -- Another request under the same key committed first: give the spend back and answer as it did.
            IF v_used IS NOT NULL THEN
                UPDATE usage_counters c SET used = c.used - e.quantity
                 WHERE c.user_id = e.user_id AND c.meter = e.meter AND c.window_start = e.window_start;
            END IF;
            SELECT c.status_code, c.answer::text, c.user_id, c.meter, c.quantity
              INTO status_code, answer, stored_user, stored_meter, stored_quantity
              FROM consumptions c WHERE c.idempotency_key = e.key;
            outcome := CASE WHEN status_code = 0 THEN 3 ELSE 1 END;
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF v_over > 0 THEN
            INSERT INTO usage_overage (consumption_id, user_id, meter, event_name, quantity, occurred_at, next_attempt_at)
            VALUES (e.id, e.user_id, e.meter, e.event_name, v_over, e.now, e.now);
        END IF;

        -- QuotaLow and QuotaExhausted, by the same rules as QuotaThresholds (Billing.Usage.Core), once per window.
        IF v_used IS NOT NULL AND e.quota_limit > 0 THEN
            IF (v_used - e.quantity) * 5 < e.quota_limit * 4 AND v_used * 5 >= e.quota_limit * 4 THEN
                INSERT INTO usage_announcements (user_id, meter, window_start, window_end, kind, quota_limit, used, occurred_at)
                VALUES (e.user_id, e.meter, e.window_start, e.window_end, 'low', e.quota_limit, v_used, e.now)
                ON CONFLICT DO NOTHING;
            END IF;
            IF v_used - e.quantity < e.quota_limit AND v_used >= e.quota_limit THEN
                INSERT INTO usage_announcements (user_id, meter, window_start, window_end, kind, quota_limit, used, occurred_at)
                VALUES (e.user_id, e.meter, e.window_start, e.window_end, 'exhausted', e.quota_limit, v_used, e.now)
                ON CONFLICT DO NOTHING;
            END IF;
        END IF;

        outcome := 0;
        answer := v_answer;
        IF v_used IS NOT NULL THEN
            used_after := v_used;
            used_before := v_used - e.quantity;
        END IF;
        stored_user := e.user_id; stored_meter := e.meter; stored_quantity := e.quantity;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION usage_reserve(
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
            INSERT INTO usage_counters AS c (user_id, meter, window_start, window_end, used, held)
            VALUES (p_user, p_meter, p_window_start, p_window_end, p_quantity, p_quantity)
            ON CONFLICT (user_id, meter, window_start) DO UPDATE SET used = c.used + EXCLUDED.used, held = c.held + EXCLUDED.held
            RETURNING c.used INTO v_used;
        ELSE
            INSERT INTO usage_counters AS c (user_id, meter, window_start, window_end, used, held)
            SELECT p_user, p_meter, p_window_start, p_window_end, p_quantity, p_quantity WHERE p_quantity <= p_limit
            ON CONFLICT (user_id, meter, window_start) DO UPDATE SET used = c.used + EXCLUDED.used, held = c.held + EXCLUDED.held
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
            UPDATE usage_counters c SET used = c.used - p_quantity, held = greatest(0, c.held - p_quantity)
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

CREATE OR REPLACE FUNCTION usage_settle(p_id uuid, p_action integer, p_quantity bigint, p_now timestamptz,
    OUT outcome text, OUT answer text, OUT return_user text, OUT return_tokens bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    r          reservations%ROWTYPE;
    v_commit   bigint;
    v_release  bigint;
    v_used     bigint;
    v_held     bigint;
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
        UPDATE usage_counters c SET used = c.used - v_release, held = greatest(0, c.held - r.quantity)
         WHERE c.user_id = r.user_id AND c.meter = r.meter AND c.window_start = r.window_start
        RETURNING c.used, c.held INTO v_used, v_held;
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
        -- Overage: how far this commit takes what is spent (not held) past the limit, like a consume's; the quota part
        -- fixed when reserving counted holds that may since have been released.
        v_over := CASE WHEN r.event_name IS NULL THEN 0
                       WHEN v_used IS NULL OR r.limit_at IS NULL THEN greatest(0, v_commit - r.quota_part)
                       ELSE least(v_commit, greatest(0, v_used - v_held - r.limit_at)) END;
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
