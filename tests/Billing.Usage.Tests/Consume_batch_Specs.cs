using Npgsql;
using NpgsqlTypes;

namespace Billing.Usage.Tests;

/// <summary>
/// Two requests under one idempotency key in two transactions at once (two replicas, or a retry racing its original):
/// the one that commits the key second gives its spend back and answers what the first answered, and the rest of its
/// batch is not affected. The same when a key comes twice in one batch.
/// </summary>
[TestFixture]
public class A_consume_batch
{
    private static UsageHost Host => Hosts.Default;

    private static readonly DateTime Window = new(2026, 11, 1, 0, 0, 0, DateTimeKind.Utc);

    private sealed record Spend(string Key, string User, long Quantity);

    [Test]
    public async Task Gives_the_spend_back_and_answers_as_stored_when_another_request_commits_the_key_first()
    {
        var user = UsageHost.NewUser();
        var key = UsageHost.NewKey();
        await using var other = new NpgsqlConnection(Host.ConnectionString);
        await other.OpenAsync();
        await using var transaction = await other.BeginTransactionAsync();
        await using (var insert = new NpgsqlCommand(
            "INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, window_start, created_at) " +
            $"VALUES ('{key}', gen_random_uuid(), '{user}', 'ai.generation', 2, true, 'quota', 200, '{{\"first\":true}}', '{Window:O}', now())", other, transaction))
        {
            await insert.ExecuteNonQueryAsync();
        }

        // The batch looks the key up (not there yet), spends, and waits on the other request's row for the key.
        var running = ConsumeManyAsync([new Spend(key, user, 2), new Spend(key + "-2", user + "-2", 2)]);
        await UsageHost.EventuallyAsync(async () => await Host.ScalarAsync(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%usage_consume_many%'") > 0);
        await transaction.CommitAsync();
        var answers = await running;

        Assert.That(answers[0], Is.EqualTo("1|200|{\"first\":true}|||" + user + "|ai.generation|2"), "answered as the first request was");
        Assert.That(answers[1], Does.StartWith("0|200|"), "the other spend of the batch is not affected");
        Assert.That(await Host.ScalarAsync($"SELECT used FROM usage_counters WHERE user_id = '{user}'"), Is.EqualTo(0), "the spend was given back");
        Assert.That(await Host.ScalarAsync($"SELECT used FROM usage_counters WHERE user_id = '{user}-2'"), Is.EqualTo(2));
    }

    [Test]
    public async Task Answers_a_key_sent_twice_in_one_batch_as_its_first_spend_and_leaves_its_quantity_to_the_next()
    {
        // A retry that lands in the same batch as its original. 8 of 10 are used: the key spends 1, its repeat answers as
        // it did (and spends nothing), so the next key still finds the last 1 left.
        var user = UsageHost.NewUser();
        var (key, next) = (UsageHost.NewKey(), UsageHost.NewKey());
        await ConsumeManyAsync([new Spend(UsageHost.NewKey(), user, 8)]);

        var answers = await ConsumeManyAsync([new Spend(key, user, 1), new Spend(key, user, 1), new Spend(next, user, 1)]);

        Assert.That(answers[0], Does.StartWith("0|200|").And.Contain("|8|9|"), "the key spends once");
        var first = answers[0].Split('|')[2];
        Assert.That(answers[1], Is.EqualTo($"1|200|{first}|||{user}|ai.generation|1"), "its repeat answers what the first stored");
        Assert.That(answers[2], Does.StartWith("0|200|").And.Contain("|9|10|"), "the next key gets the last one");
        Assert.That(await Host.ScalarAsync($"SELECT used FROM usage_counters WHERE user_id = '{user}'"), Is.EqualTo(10));
        Assert.That(await Host.ScalarAsync($"SELECT count(*) FROM consumptions WHERE user_id = '{user}' AND allowed"), Is.EqualTo(3));
    }

    [Test]
    public async Task Answers_a_key_sent_twice_in_one_batch_as_its_first_spend_when_that_one_filled_the_window()
    {
        var user = UsageHost.NewUser();
        var (key, next) = (UsageHost.NewKey(), UsageHost.NewKey());
        await ConsumeManyAsync([new Spend(UsageHost.NewKey(), user, 9)]);

        var answers = await ConsumeManyAsync([new Spend(key, user, 1), new Spend(key, user, 1), new Spend(next, user, 1)]);

        Assert.That(answers[0], Does.StartWith("0|200|").And.Contain("|9|10|"));
        Assert.That(answers[1], Is.EqualTo($"1|200|{answers[0].Split('|')[2]}|||{user}|ai.generation|1"), "allowed, as its first spend was");
        Assert.That(answers[2], Is.EqualTo("0|402|{\"refused\":true}|||" + user + "|ai.generation|1"), "the window is full");
        Assert.That(await Host.ScalarAsync($"SELECT used FROM usage_counters WHERE user_id = '{user}'"), Is.EqualTo(10));
    }

    /// <summary>Runs the spends as one batch, as the writer does (no subscriber row: version -1, limit 10).</summary>
    private static async Task<List<string>> ConsumeManyAsync(IReadOnlyList<Spend> spends)
    {
        await using var connection = new NpgsqlConnection(Host.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT outcome, status_code, answer, used_before, used_after, stored_user, stored_meter, stored_quantity " +
            "FROM usage_consume_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)", connection);
        var p = command.Parameters;
        p.Add(Param(NpgsqlDbType.Text, spends.Select(s => s.Key).ToArray()));
        p.Add(Param(NpgsqlDbType.Uuid, spends.Select(_ => Guid.NewGuid()).ToArray()));
        p.Add(Param(NpgsqlDbType.Text, spends.Select(s => s.User).ToArray()));
        p.Add(Param(NpgsqlDbType.Text, spends.Select(_ => "ai.generation").ToArray()));
        p.Add(Param(NpgsqlDbType.Bigint, spends.Select(s => s.Quantity).ToArray()));
        p.Add(Param(NpgsqlDbType.Bigint, spends.Select(_ => -1L).ToArray()));
        p.Add(Param(NpgsqlDbType.Integer, spends.Select(_ => 0).ToArray()));
        p.Add(Param(NpgsqlDbType.TimestampTz, spends.Select(_ => Window).ToArray()));
        p.Add(Param(NpgsqlDbType.TimestampTz, spends.Select(_ => Window.AddMonths(1)).ToArray()));
        p.Add(Param(NpgsqlDbType.Bigint, spends.Select(_ => 10L).ToArray()));
        p.Add(Param(NpgsqlDbType.Integer, spends.Select(_ => 0).ToArray()));
        p.Add(Param(NpgsqlDbType.Text, spends.Select(_ => (string?)null).ToArray()));
        p.Add(Param(NpgsqlDbType.Text, spends.Select(_ => (string?)null).ToArray()));
        p.Add(Param(NpgsqlDbType.Integer, spends.Select(_ => 0).ToArray()));
        p.Add(Param(NpgsqlDbType.Text, spends.Select(_ => "{\"refused\":true}").ToArray()));
        p.Add(Param(NpgsqlDbType.TimestampTz, spends.Select(_ => DateTime.UtcNow).ToArray()));
        var answers = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            answers.Add(string.Join('|', Enumerable.Range(0, reader.FieldCount).Select(i => reader.IsDBNull(i) ? "" : reader.GetValue(i).ToString())));
        }
        return answers;
    }

    private static NpgsqlParameter Param<T>(NpgsqlDbType type, T[] values) =>
        new() { NpgsqlDbType = NpgsqlDbType.Array | type, Value = values };
}
