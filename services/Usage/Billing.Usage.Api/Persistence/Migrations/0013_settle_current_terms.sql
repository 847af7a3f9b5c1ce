-- A reservation's commit (and its release's answer) follows the plan the user has NOW, like a consume: the overage
-- billed is what the commit takes past the current limit, and `remaining` is the current limit's. Before, both used the
-- limit at reserve time: a user who upgraded mid-stream (Pro's 3 a day to Business's 10) was billed for units inside
-- the new allowance. Usage decides the current terms for the reservation's own window and passes them with the
-- subscriber's version — also when it decided to keep the reservation's own terms (p_current false: the window has
-- moved on, the plan blocks the meter now) — and the function answers 'stale' when the version moved (Usage reads the
-- subscriber again). The expiry sweeper passes no version and keeps the reservation's terms.
--
-- A new overload: the 4-argument usage_settle of 0007 stays for replicas of the previous release during a rollout.

CREATE OR REPLACE FUNCTION usage_settle(p_id uuid, p_action integer, p_quantity bigint, p_now timestamptz,
    p_current boolean, p_limit bigint, p_event_name text, p_version bigint,
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
    v_limit    bigint;
    v_event    text;
    v_version  bigint;
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

    -- The terms the plan has now, when the caller decided them for the reservation's own window on the subscriber's
    -- current version (else what the reservation was made under): a commit after an upgrade bills only what passes the
    -- new limit, as a consume made at that moment would.
    IF p_version IS NOT NULL THEN
        SELECT s.version INTO v_version FROM usage_subjects s WHERE s.user_id = r.user_id;
        IF coalesce(v_version, -1) <> p_version THEN
            outcome := 'stale';
            RETURN;
        END IF;
    END IF;
    IF p_current THEN
        v_limit := p_limit;
        v_event := p_event_name;
    ELSE
        v_limit := r.limit_at;
        v_event := r.event_name;
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
                                    'remaining', CASE WHEN v_limit IS NULL OR v_used IS NULL THEN NULL ELSE greatest(0, v_limit - v_used) END)::text;
    END IF;
    UPDATE reservations SET status = v_status, committed = v_commit, settled_at = p_now, settle_answer = answer::json,
                            tokens_to_return = v_return, return_due = v_return > 0
     WHERE reservation_id = r.reservation_id;

    IF v_commit > 0 THEN
        -- Overage: how far this commit takes what is spent (not held) past the limit, like a consume's; the quota part
        -- fixed when reserving counted holds that may since have been released.
        v_over := CASE WHEN v_event IS NULL OR r.tokens > 0 THEN 0 -- a token-backed reservation is paid for already
                       WHEN p_current AND v_limit IS NULL THEN 0
                       WHEN v_used IS NULL OR v_limit IS NULL THEN greatest(0, v_commit - r.quota_part)
                       ELSE least(v_commit, greatest(0, v_used - v_held - v_limit)) END;
        v_source := CASE WHEN r.tokens > 0 THEN 'tokens' WHEN v_over > 0 THEN 'overage' WHEN v_limit IS NULL THEN 'unlimited' ELSE 'quota' END;
        -- The committed amount is usage like a consume's: it shows in the history.
        INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, window_start, created_at)
        VALUES ('reservation:' || r.reservation_id, r.reservation_id, r.user_id, r.meter, v_commit, true, v_source, 200, answer::json, r.window_start, p_now)
        ON CONFLICT DO NOTHING;
        IF v_over > 0 THEN
            INSERT INTO usage_overage (consumption_id, user_id, meter, event_name, quantity, occurred_at, next_attempt_at)
            VALUES (r.reservation_id, r.user_id, r.meter, v_event, v_over, p_now, p_now)
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
