-- The spend functions look rows up by key (consumptions by idempotency key, counters, subjects, balances and
-- reservations by primary key). PL/pgSQL caches each statement's plan per connection, and a plan made while a table is
-- tiny (a new deployment, the first minutes of a new table) is a sequential scan, which stays cached while the table
-- grows until the next ANALYZE: measured on a fresh database, 152 consumes/s instead of ~5,000, PostgreSQL spending
-- 6 ms per spend scanning consumptions. With sequential scans off inside these functions their plans use the indexes
-- whatever the tables' size; a statement with no index to use still scans. A later CREATE OR REPLACE of one of these
-- functions must repeat 'SET enable_seqscan = off' (a spec checks every one of them).
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace
           AND p.proname IN ('usage_consume_many', 'usage_reserve', 'usage_reservation_debited', 'usage_settle',
                             'usage_settle_tokens')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET enable_seqscan = off', f);
    END LOOP;
END
$$;
