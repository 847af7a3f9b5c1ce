-- The group-commit writer's batch as ONE statement in ONE implicit transaction: one round trip per batch (Bind,
-- Execute, Sync; PostgreSQL commits before ReadyForQuery), instead of a batch of calls followed by a COMMIT.
--
-- usage_consume_many replaces usage_consume: the same rules, one array element per spend, with fewer statements per
-- spend (the key, the subscriber's version and the token balance are read by one statement; the profile of the old
-- function showed its time going to starting statements, not to the work).
--
-- QuotaLow (80 %) and QuotaExhausted are decided here, in the spend's transaction, and kept as plain rows of
-- usage_announcements; the QuotaAnnouncer moves them into the outbox (message ids derived from the user, meter and
-- window, as before), so an announcement is never lost and never made twice, and the batch needs no second step.

CREATE TABLE usage_announcements (
    user_id      text        NOT NULL,
    meter        text        NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    kind         text        NOT NULL,
    quota_limit  bigint      NOT NULL,
    used         bigint      NOT NULL,
    occurred_at  timestamptz NOT NULL,
    CONSTRAINT pk_usage_announcements PRIMARY KEY (user_id, meter, window_start, kind),
    CONSTRAINT ck_usage_announcements_kind CHECK (kind IN ('low', 'exhausted'))
);

-- consumption_id is a UUIDv7 made by the service and is never looked up in this table (Stripe's meter identifiers are
-- guarded by usage_overage's primary key); its unique index cost one more index insert per spend and a third of the
-- table's index size.
ALTER TABLE consumptions DROP CONSTRAINT ux_consumptions_consumption_id;

DROP FUNCTION usage_consume(text, uuid, text, text, bigint, bigint, integer, timestamptz, timestamptz, bigint, integer,
                            text, text, integer, text, timestamptz);

-- One row per element, in array order (the writer sorts by user and meter, so two writers lock counters in the same
-- order), with its 1-based ordinal. Outcomes: 0 answered now, 1 a stored answer under the key (replay), 2 the subscriber
-- changed since the version the decision was made on (decide again; nothing written), 3 the window cannot cover a
-- tokens meter: the key is claimed and Wallet's debit decides.
-- mode 0 spends from the window; mode 1 records status/answer without spending (refusals, unlimited groups).
-- overage: 0 block (answer is the 402 to record), 1 tokens, 2 bill (allowed past the limit, overage recorded).
CREATE FUNCTION usage_consume_many(
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
                RETURNING c.used INTO v_used;
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
                    v_over := least(e.quantity, greatest(0, v_used - e.quota_limit));
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
