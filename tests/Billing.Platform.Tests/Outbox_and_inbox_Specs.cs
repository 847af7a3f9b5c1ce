using System.Collections.Concurrent;
using System.Diagnostics;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Messaging;
using Dapper;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Billing.Platform.Tests;

/// <summary>A message only these tests publish.</summary>
public sealed record OutboxProbeHappened
{
    public required string UserId { get; init; }
    public required int Amount { get; init; }
    public required DateTimeOffset OccurredAt { get; init; }
}

/// <summary>Applies a probe's effect (adds its amount to a total) once per message, through the inbox.</summary>
public sealed class OutboxProbeConsumer(Inbox inbox) : IConsumer<OutboxProbeHappened>
{
    public static readonly ConcurrentQueue<(Guid MessageId, string UserId)> Deliveries = new();

    /// <summary>Deliveries whose handling has finished (its transaction committed, or found the message already handled).</summary>
    public static readonly ConcurrentQueue<Guid> Completed = new();

    /// <summary>Per user: the correlation id header the message carried, and the one the consumer ran under.</summary>
    public static readonly ConcurrentDictionary<string, (string? Header, string? Current)> Correlations = new();

    public async Task Consume(ConsumeContext<OutboxProbeHappened> context)
    {
        Deliveries.Enqueue((context.MessageId!.Value, context.Message.UserId));
        Correlations[context.Message.UserId] = (context.Headers.Get<string>(Billing.ServiceDefaults.CorrelationId.Header),
            Billing.ServiceDefaults.CorrelationId.Current);
        await inbox.HandleOnceAsync(context, GetType(), (connection, transaction, ct) =>
            connection.ExecuteAsync(new CommandDefinition(
                "INSERT INTO probe_totals (user_id, total, applications) VALUES (@UserId, @Amount, 1) " +
                "ON CONFLICT (user_id) DO UPDATE SET total = probe_totals.total + @Amount, applications = probe_totals.applications + 1",
                new { context.Message.UserId, context.Message.Amount }, transaction, cancellationToken: ct)));
        Completed.Enqueue(context.MessageId!.Value);
    }
}

/// <summary>
/// ARCHITECTURE.md rule 2 on the real PostgreSQL and RabbitMQ: the message is written with the state change, a relay
/// publishes it, and the consumer's inbox makes every redelivery harmless.
/// </summary>
[TestFixture]
[NonParallelizable]
public class The_outbox_and_the_inbox
{
    private IHost _host = null!;
    private NpgsqlDataSource _db = null!;
    private OutboxRelay _relay = null!;

    [OneTimeSetUp]
    public async Task StartHost()
    {
        var cs = TestEnvironment.Database("outbox");
        await DatabaseMigrator.MigrateAsync(cs, typeof(DatabaseMigrator).Assembly, NullLogger.Instance);
        await using (var setup = new NpgsqlConnection(cs))
        {
            await setup.ExecuteAsync("CREATE TABLE IF NOT EXISTS probe_totals (user_id text PRIMARY KEY, total int NOT NULL, applications int NOT NULL)");
        }

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Configuration["ConnectionStrings:Database"] = cs;
        builder.Configuration["RabbitMq:Host"] = TestEnvironment.RabbitHost;
        builder.Configuration["RabbitMq:Port"] = TestEnvironment.RabbitPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        builder.Configuration["RabbitMq:QueuePrefix"] = TestEnvironment.RunId + "-";
        builder.AddBillingDatabase(typeof(DatabaseMigrator).Assembly);
        builder.AddBillingBus("platform-tests", bus => bus.AddConsumer<OutboxProbeConsumer>());
        builder.Services.AddSingleton(new OutboxRelayOptions { PollInterval = TimeSpan.FromMilliseconds(200), PublishTimeout = TimeSpan.FromSeconds(3) });
        _host = builder.Build();
        await _host.StartAsync();
        _db = _host.Services.GetRequiredService<NpgsqlDataSource>();
        _relay = _host.Services.GetServices<IHostedService>().OfType<OutboxRelay>().Single();
    }

    [OneTimeTearDown]
    public async Task StopHost()
    {
        await RabbitCtl("start_app"); // in case a test stopped it and failed before restarting
        await _host.StopAsync();
        _host.Dispose();
    }

    [Test]
    public async Task A_committed_message_is_delivered_and_applied_once()
    {
        var user = NewUser();
        await WriteAsync(user, 5, commit: true);
        await EventuallyAsync(async () => await TotalAsync(user) == (5, 1));
        // The relay marks the row after the broker confirmed it, which may be a moment after the consumer ran.
        await EventuallyAsync(async () => await UnsentAsync() == 0);
    }

    [Test]
    public async Task A_rolled_back_state_change_publishes_nothing()
    {
        var user = NewUser();
        await WriteAsync(user, 7, commit: false);
        await WriteAsync(user, 1, commit: true); // a marker that arrives after anything the rollback could have sent
        await EventuallyAsync(async () => (await TotalAsync(user)).Applications >= 1);
        await Task.Delay(300);
        Assert.That(await TotalAsync(user), Is.EqualTo((1, 1)));
    }

    [Test]
    public async Task A_message_carries_the_correlation_id_it_was_written_under_and_its_consumer_works_under_it()
    {
        var user = NewUser();
        var other = NewUser();
        Billing.ServiceDefaults.CorrelationId.Current = "req-" + user;
        try
        {
            await WriteAsync(user, 1, commit: true);
        }
        finally
        {
            Billing.ServiceDefaults.CorrelationId.Current = null;
        }
        await WriteAsync(other, 1, commit: true); // written outside any request: no id

        await EventuallyAsync(() => Task.FromResult(OutboxProbeConsumer.Correlations.ContainsKey(user) && OutboxProbeConsumer.Correlations.ContainsKey(other)));
        Assert.That(OutboxProbeConsumer.Correlations[user], Is.EqualTo(("req-" + user, "req-" + user)));
        Assert.That(OutboxProbeConsumer.Correlations[other], Is.EqualTo(((string?)null, (string?)null)));
    }

    [Test]
    public async Task A_message_delivered_twice_has_its_effect_once()
    {
        var user = NewUser();
        var id = Guid.NewGuid();
        var bus = _host.Services.GetRequiredService<IBus>();
        var message = new OutboxProbeHappened { UserId = user, Amount = 3, OccurredAt = DateTimeOffset.UtcNow };
        await bus.Publish(message, c => c.MessageId = id);
        await bus.Publish(message, c => c.MessageId = id);
        // Both deliveries handled to the end (a delivery is recorded as it arrives, before its transaction commits).
        await EventuallyAsync(() => Task.FromResult(OutboxProbeConsumer.Completed.Count(m => m == id) >= 2));
        Assert.That(await TotalAsync(user), Is.EqualTo((3, 1)));
    }

    [Test]
    public async Task Messages_written_while_RabbitMQ_is_down_wait_and_all_arrive_after_it_returns()
    {
        var user = NewUser();
        await RabbitCtl("stop_app");
        try
        {
            for (var i = 0; i < 20; i++)
            {
                await WriteAsync(user, 1, commit: true); // the state change commits although the broker is gone
            }
            await Task.Delay(1500);
            Assert.That(await UnsentAsync(), Is.GreaterThan(0), "nothing can be published while the broker is down");
        }
        finally
        {
            await RabbitCtl("start_app");
        }
        await EventuallyAsync(async () => await TotalAsync(user) == (20, 20), TimeSpan.FromSeconds(90));
        await EventuallyAsync(async () => await UnsentAsync() == 0);
    }

    [Test]
    public async Task A_relay_that_dies_after_publishing_but_before_marking_causes_no_double_effect()
    {
        var user = NewUser();
        await using (var connection = await _db.OpenConnectionAsync())
        {
            // The "crash": marking the row as sent fails, so its transaction rolls back after the publish went out.
            await connection.ExecuteAsync(
                """
                CREATE OR REPLACE FUNCTION fail_outbox_mark() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'relay crashed before marking'; END $$;
                CREATE TRIGGER fail_outbox_mark BEFORE UPDATE OF sent_at ON outbox
                FOR EACH ROW WHEN (NEW.sent_at IS NOT NULL) EXECUTE FUNCTION fail_outbox_mark();
                """);
        }
        try
        {
            await WriteAsync(user, 4, commit: true);
            // The relay publishes, then fails to mark: the row stays unsent and the message was delivered.
            await EventuallyAsync(async () => await TotalAsync(user) == (4, 1));
            Assert.That(await UnsentAsync(), Is.GreaterThan(0));
        }
        finally
        {
            await using var connection = await _db.OpenConnectionAsync();
            await connection.ExecuteAsync("DROP TRIGGER fail_outbox_mark ON outbox");
        }
        // After "restart" the relay publishes the same row again with the same MessageId.
        await EventuallyAsync(async () => await UnsentAsync() == 0);
        await EventuallyAsync(() => Task.FromResult(OutboxProbeConsumer.Deliveries.Count(d => d.UserId == user) >= 2));
        Assert.That(OutboxProbeConsumer.Deliveries.Where(d => d.UserId == user).Select(d => d.MessageId).Distinct().Count(), Is.EqualTo(1),
            "the same message, with the same MessageId, was published twice");
        await Task.Delay(500);
        Assert.That(await TotalAsync(user), Is.EqualTo((4, 1)), "re-published, but applied once");
    }

    [Test]
    public async Task A_row_this_process_cannot_publish_is_set_aside_and_the_rows_after_it_are_delivered()
    {
        var user = NewUser();
        var probeType = $"{typeof(OutboxProbeHappened).FullName}, {typeof(OutboxProbeHappened).Assembly.GetName().Name}";
        var (unknownType, badPayload) = (Guid.NewGuid(), Guid.NewGuid());
        await using (var connection = await _db.OpenConnectionAsync())
        {
            await connection.ExecuteAsync(
                """
                INSERT INTO outbox (id, message_type, payload) VALUES
                    (@unknownType, 'Billing.Contracts.NoLongerExists, Billing.Contracts', '{}'),
                    (@badPayload, @probeType, '[1, 2]')
                """, new { unknownType, badPayload, probeType });
        }
        await WriteAsync(user, 6, commit: true);

        await EventuallyAsync(async () => await TotalAsync(user) == (6, 1));
        await using var check = await _db.OpenConnectionAsync();
        var parked = (await check.QueryAsync<(Guid Id, DateTime? ParkedAt, DateTime? SentAt, string? LastError)>(
            "SELECT id, parked_at, sent_at, last_error FROM outbox WHERE id = ANY(@ids)", new { ids = new[] { unknownType, badPayload } })).ToList();
        Assert.That(parked, Has.Count.EqualTo(2));
        Assert.That(parked.All(p => p.ParkedAt is null && p.SentAt is null && !string.IsNullOrEmpty(p.LastError)), Is.True,
            "unsent, with their error, for a newer replica or an operator: " + string.Join(" | ", parked.Select(p => $"{p.Id} parked={p.ParkedAt} error={p.LastError}")));
        // What an operator does with a message no release can publish: park it for good.
        await check.ExecuteAsync("UPDATE outbox SET parked_at = now() WHERE id = ANY(@ids)", new { ids = new[] { unknownType, badPayload } });
        await EventuallyAsync(async () => await UnsentAsync() == 0);
    }

    [Test]
    public async Task Enqueuing_the_same_deterministic_message_twice_keeps_one_row()
    {
        var id = Outbox.MessageId("evt_123", nameof(OutboxProbeHappened));
        Assert.That(Outbox.MessageId("evt_123", nameof(OutboxProbeHappened)), Is.EqualTo(id));
        await using var connection = await _db.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var message = new OutboxProbeHappened { UserId = NewUser(), Amount = 1, OccurredAt = DateTimeOffset.UtcNow };
        Assert.That(await Outbox.EnqueueAsync(connection, tx, message, id), Is.True);
        Assert.That(await Outbox.EnqueueAsync(connection, tx, message, id), Is.False);
        await tx.RollbackAsync();
    }

    private static string NewUser() => "u-" + Guid.NewGuid().ToString("N")[..10];

    private async Task WriteAsync(string user, int amount, bool commit)
    {
        await using var connection = await _db.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await Outbox.EnqueueAsync(connection, tx, new OutboxProbeHappened { UserId = user, Amount = amount, OccurredAt = DateTimeOffset.UtcNow });
        if (commit)
        {
            await tx.CommitAsync();
        }
        else
        {
            await tx.RollbackAsync();
        }
    }

    private async Task<(int Total, int Applications)> TotalAsync(string user)
    {
        await using var connection = await _db.OpenConnectionAsync();
        var row = await connection.QuerySingleOrDefaultAsync<(int, int)?>("SELECT total, applications FROM probe_totals WHERE user_id = @user", new { user });
        return row ?? (0, 0);
    }

    private async Task<long> UnsentAsync()
    {
        await using var connection = await _db.OpenConnectionAsync();
        return await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL");
    }

    private static Task EventuallyAsync(Func<Task<bool>> condition, TimeSpan? timeout = null) => Wait.UntilAsync(condition, timeout);

    private static async Task RabbitCtl(string command)
    {
        using var process = Process.Start(new ProcessStartInfo("bash", [Path.Combine(TestEnvironment.Repo, "deploy", "lib", "rabbitctl.sh"), "test", command])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            Assert.Fail($"rabbitctl {command} failed: {await process.StandardError.ReadToEndAsync()}");
        }
    }
}
