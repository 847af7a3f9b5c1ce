-- usage_consume_many keeps one plan for its batch lookup. 0017 made that lookup one statement joining the batch's
-- arrays to three tables, and PL/pgSQL planned it anew at every call with a small batch: a custom plan was estimated
-- cheaper than the generic one (the same plan: nested loops over the three primary keys), so each call paid for
-- planning a four-way join. A call with one spend took 0.92 ms instead of 0.56 before 0017, so the consume benchmark's
-- pgbench reference (one spend a transaction) got slower, and every ratio to it looked better than it was. Measured on
-- this machine, one client, ms a call:
--
--   spends a call   before 0017   0017 alone         0017 + this
--   1               0.56          0.92               0.58                (medians of 3 rounds, alternating)
--   4               -             1.27-1.41          0.96-1.15           (6 rounds each, alternating, either order first)
--   32              -             2.83-3.52          2.73-3.43           (the same)
--
-- With 32 spends PostgreSQL already chose the generic plan. Every other statement of the function is a lookup or a
-- write by key, which the generic plan serves as well (and sequential scans stay off, 0014).
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace AND p.proname = 'usage_consume_many'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET plan_cache_mode = force_generic_plan', f);
    END LOOP;
END
$$;
