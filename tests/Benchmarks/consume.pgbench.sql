-- The exact SQL of one consume (what the service runs per spend), as pgbench's reference: one durable transaction
-- per spend. Variables: users, run (number), ws / we (the window, unix seconds).
\set u random(1, :users)
SELECT outcome, status_code, answer, used_before, used_after, stored_user, stored_meter, stored_quantity
FROM usage_consume('pgb-' || :run || '-' || gen_random_uuid(), gen_random_uuid(), 'bench-' || :run || '-u' || :u, 'ai.generation', 1::bigint, 0::bigint, 0,
                   to_timestamp(:ws), to_timestamp(:we), 250::bigint, 0, NULL, NULL, 0,
                   '{"type":"https://billing.dev/problems/quota-exhausted","title":"The quota is used up.","status":402,"code":"quota_exhausted"}', now());
