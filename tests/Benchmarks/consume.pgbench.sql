-- The exact SQL of one consume (what the service runs, as a batch of one), as pgbench's reference: one durable
-- transaction per spend. Variables: users, run (number), ws / we (the window, unix seconds).
\set u random(1, :users)
SELECT ordinal, outcome, status_code, answer, used_before, used_after, stored_user, stored_meter, stored_quantity
FROM usage_consume_many(ARRAY['pgb-' || :run || '-' || gen_random_uuid()], ARRAY[gen_random_uuid()], ARRAY['bench-' || :run || '-u' || :u],
                        ARRAY['ai.generation'], ARRAY[1::bigint], ARRAY[0::bigint], ARRAY[0],
                        ARRAY[to_timestamp(:ws)], ARRAY[to_timestamp(:we)], ARRAY[250::bigint], ARRAY[0], ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[0],
                        ARRAY['{"type":"https://billing.dev/problems/quota-exhausted","title":"The quota is used up.","status":402,"code":"quota_exhausted"}'], ARRAY[now()]);
