using Npgsql;

namespace Billing.Usage.Tests;

/// <summary>
/// The spend functions find their rows through the indexes, however the planner costs a scan. PL/pgSQL caches a plan
/// per connection; one made while a table is tiny (a new deployment) is a sequential scan and stays cached while the
/// table grows — measured on a fresh database before migration 0014: 152 consumes/s instead of ~5,000, PostgreSQL
/// scanning the whole of <c>consumptions</c> for every spend (the claim and owner lookups: migration 0015).
/// </summary>
[TestFixture]
public class Spend_function_plans
{
    private static UsageHost Host => Hosts.Default;

    /// <summary>Every function of the spend path; each looks rows up by key.</summary>
    private static readonly string[] SpendCalls =
    [
        """
        SELECT * FROM usage_consume_many(ARRAY['plan-k1'], ARRAY[gen_random_uuid()], ARRAY['plan-u1'], ARRAY['ai.generation'],
            ARRAY[1::bigint], ARRAY[-1::bigint], ARRAY[0], ARRAY[now()], ARRAY[now() + interval '1 day'], ARRAY[10::bigint],
            ARRAY[0], ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::integer], ARRAY[NULL::text], ARRAY[now()])
        """,
        """
        SELECT * FROM usage_reserve('plan-k2', gen_random_uuid(), 'plan-u1', 'ai.generation', 1, -1, 0, now(),
            now() + interval '1 day', 10, 0, NULL, NULL, now() + interval '1 minute', now(), 0)
        """,
        "SELECT * FROM usage_reservation_debited(gen_random_uuid(), 200, '{}', 0)",
        "SELECT * FROM usage_settle(gen_random_uuid(), 1, 1, now())",
        "SELECT * FROM usage_settle(gen_random_uuid(), 1, 1, now(), false, 10, NULL, 0)",
        "SELECT * FROM usage_settle_tokens('plan-k3', 200, '{}')",
        "SELECT * FROM usage_claim_price('plan-k4', now(), 10)",
        "SELECT * FROM usage_lock_claim('plan-k5')",
        "SELECT * FROM usage_reservation_owner(gen_random_uuid())",
    ];

    [Test]
    public async Task Every_spend_function_looks_its_rows_up_by_index_even_where_the_planner_finds_a_scan_cheaper()
    {
        // A connection of its own (no plans cached yet) on which a scan costs nothing, as it nearly does on a tiny table.
        await using var connection = new NpgsqlConnection(Host.ConnectionString + ";Pooling=false");
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await Execute(connection, "SET LOCAL seq_page_cost = 0; SET LOCAL cpu_tuple_cost = 0; SET LOCAL cpu_operator_cost = 0");
        foreach (var call in SpendCalls)
        {
            await Execute(connection, call);
        }

        var scanned = new List<string>();
        await using (var command = new NpgsqlCommand(
            "SELECT relname || ' (' || seq_scan || ')' FROM pg_stat_xact_user_tables WHERE seq_scan > 0 ORDER BY relname", connection))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                scanned.Add(reader.GetString(0));
            }
        }
        Assert.That(scanned, Is.Empty, "tables the spend functions scanned instead of using an index");
    }

    [Test]
    public async Task Every_spend_function_keeps_sequential_scans_off_also_after_a_later_migration_replaced_it()
    {
        // CREATE OR REPLACE FUNCTION drops a function's SET clauses: a migration that redefines one must repeat it.
        var missing = await Host.ScalarTextAsync("""
            SELECT string_agg(p.oid::regprocedure::text, '; ' ORDER BY p.oid)
              FROM pg_proc p
             WHERE p.pronamespace = current_schema()::regnamespace
               AND p.proname LIKE 'usage\_%'
               AND p.proname NOT IN ('usage_retire', 'usage_subjects_bump_version')
               AND NOT coalesce('enable_seqscan=off' = ANY (p.proconfig), false)
            """);
        Assert.That(missing, Is.Null.Or.Empty, "spend functions without SET enable_seqscan = off");
    }

    [Test]
    public async Task The_batch_statement_keeps_one_plan_for_its_lookup_also_after_a_later_migration_replaced_it()
    {
        // 0018: re-planning the batch lookup at every small call made a spend ~0.35 ms dearer (and the benchmark's
        // pgbench reference with it). CREATE OR REPLACE FUNCTION drops the setting, as it drops enable_seqscan.
        var config = await Host.ScalarTextAsync(
            "SELECT array_to_string(proconfig, ',') FROM pg_proc WHERE proname = 'usage_consume_many' AND pronamespace = current_schema()::regnamespace");
        Assert.That(config, Does.Contain("plan_cache_mode=force_generic_plan"), "usage_consume_many without SET plan_cache_mode = force_generic_plan");
    }

    [Test]
    public async Task The_batch_lookup_probes_each_key_also_with_a_plan_made_while_the_tables_were_empty()
    {
        // 0019: the lookup's one cached plan (0018), made just after an ANALYZE of an empty consumptions (a new
        // deployment, the benchmark after deleting its rows), read the whole table for every batch while it grew: 105 ms
        // a batch of 32 after 20 s. Here the function runs on empty, analysed copies of the three tables it looks up (its
        // names resolve through the search path), is planned there, then finds 2,000 rows and must read only its keys.
        await using var connection = new NpgsqlConnection(Host.ConnectionString + ";Pooling=false");
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await Execute(connection, """
            CREATE SCHEMA plan_scratch;
            CREATE TABLE plan_scratch.consumptions (LIKE consumptions INCLUDING ALL);
            CREATE TABLE plan_scratch.usage_subjects (LIKE usage_subjects INCLUDING ALL);
            CREATE TABLE plan_scratch.token_balances (LIKE token_balances INCLUDING ALL);
            ANALYZE plan_scratch.consumptions, plan_scratch.usage_subjects, plan_scratch.token_balances;
            SELECT set_config('search_path', 'plan_scratch, ' || current_setting('search_path'), true);
            """);
        await Execute(connection, Batch("plan-empty-", 1)); // planned now, on empty tables
        await Execute(connection, """
            INSERT INTO plan_scratch.consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, status_code, answer, created_at)
            SELECT 'plan-grown-' || g, gen_random_uuid(), 'plan-u' || g, 'ai.generation', 1, true, 200, '{}', now() FROM generate_series(1, 2000) g
            """);

        var before = await RowsFetchedByIndex(connection);
        await Execute(connection, Batch("plan-after-", 2));
        var fetched = await RowsFetchedByIndex(connection) - before;

        Assert.That(fetched, Is.LessThan(20), "rows of consumptions fetched through an index for a batch of 2 new keys (2,000 stored)");
    }

    /// <summary>A call of usage_consume_many with <paramref name="spends"/> new keys (users unknown: version -1).</summary>
    private static string Batch(string keyPrefix, int spends) => $"""
        SELECT count(*) FROM usage_consume_many(
            ARRAY(SELECT '{keyPrefix}' || g FROM generate_series(1, {spends}) g), ARRAY(SELECT gen_random_uuid() FROM generate_series(1, {spends})),
            array_fill('plan-u1'::text, ARRAY[{spends}]), array_fill('ai.generation'::text, ARRAY[{spends}]), array_fill(1::bigint, ARRAY[{spends}]),
            array_fill(-1::bigint, ARRAY[{spends}]), array_fill(0, ARRAY[{spends}]), array_fill(now(), ARRAY[{spends}]),
            array_fill(now() + interval '1 day', ARRAY[{spends}]), array_fill(100::bigint, ARRAY[{spends}]), array_fill(0, ARRAY[{spends}]),
            array_fill(NULL::text, ARRAY[{spends}]), array_fill(NULL::text, ARRAY[{spends}]), array_fill(NULL::integer, ARRAY[{spends}]),
            array_fill(NULL::text, ARRAY[{spends}]), array_fill(now(), ARRAY[{spends}]))
        """;

    /// <summary>Rows of the scratch <c>consumptions</c> fetched through an index so far in this transaction.</summary>
    private static async Task<long> RowsFetchedByIndex(NpgsqlConnection connection)
    {
        await using var command = new NpgsqlCommand(
            "SELECT coalesce(sum(idx_tup_fetch), 0) FROM pg_stat_xact_user_tables WHERE schemaname = 'plan_scratch' AND relname = 'consumptions'", connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync());
    }

    private static async Task Execute(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
