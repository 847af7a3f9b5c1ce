using Billing.Contracts;
using Billing.Subscriptions.Api.Persistence;
using Billing.Subscriptions.Core.Subscriptions;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>
/// The first two messages of a subscription Subscriptions has not stored yet, consumed at the same time (a queue that filled
/// up during an outage, several replicas): the newer one's state stays, whichever transaction writes last.
/// </summary>
[TestFixture]
public class The_first_messages_of_a_subscription_racing
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    [Test]
    public async Task Leave_the_newer_state_an_ended_subscription_is_not_brought_back_by_its_activation()
    {
        var bus = Host.Services.GetRequiredService<IBus>(); // the service (and its database) started
        // Several pairs at once: without a lock on the id, which of a pair writes last is up to the scheduler.
        const int pairs = 4;
        var start = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()).AddDays(-3);
        var ids = Enumerable.Range(0, pairs).Select(_ => "sub_race_" + SubscriptionsHost.NewUser()).ToList();

        // An uncommitted row under each id holds both messages of its pair at the same point: each has read that there is
        // no row (the uncommitted one is invisible to it) and waits to insert its own; a lock taken before the read would
        // hold the second message before it reads instead.
        await using var blocker = new NpgsqlConnection(SubscriptionsHost.ConnectionString);
        await blocker.OpenAsync();
        await using var tx = await blocker.BeginTransactionAsync();
        foreach (var id in ids)
        {
            await SubscriptionStore.UpsertAsync(blocker, tx, new SubscriptionRecord
            {
                SubscriptionId = id, UserId = "u-blocker", CustomerId = "cus_blocker", PlanId = "pro", PriceId = "price_blocker", Interval = "month",
                IntervalCount = 1, StripeStatus = "incomplete", CurrentPeriodStart = start, CurrentPeriodEnd = start.AddMonths(1),
                CancelAtPeriodEnd = false, StartedAt = start, Sequence = 0,
            }, CancellationToken.None);
        }

        var messageIds = new List<Guid>();
        foreach (var id in ids)
        {
            var user = id["sub_race_".Length..];
            var ended = Guid.NewGuid();
            await bus.Publish(new SubscriptionEnded
            {
                UserId = user, SubscriptionId = id, PlanId = "pro", Status = "canceled", EndedAt = start.AddDays(1), Reason = "cancellation_requested",
                Sequence = 1001, OccurredAt = start.AddDays(1),
            }, c => c.MessageId = ended);
            var activated = Guid.NewGuid();
            await bus.Publish(new SubscriptionActivated
            {
                UserId = user, SubscriptionId = id, CustomerId = "cus_" + user, PlanId = "pro", PriceId = "price_pro_month", Interval = "month",
                IntervalCount = 1, Status = "active", CurrentPeriodStart = start, CurrentPeriodEnd = start.AddMonths(1), StartedAt = start,
                Sequence = 1000, OccurredAt = start,
            }, c => c.MessageId = activated);
            messageIds.AddRange([ended, activated]);
        }
        // Every pair waits when the service consumes 2 × pairs messages at once (it does here: all 8 wait within ~20 ms on
        // 2 processors); where it consumes fewer at once, the pairs that got in race and the rest follow.
        var waitingSince = System.Diagnostics.Stopwatch.StartNew();
        long waiting;
        while ((waiting = await WaitingAsync()) < 2 * pairs && waitingSince.Elapsed < TimeSpan.FromSeconds(5))
        {
            await Task.Delay(50);
        }
        Assert.That(waiting, Is.GreaterThanOrEqualTo(2), "at least one pair waits at the same point");
        await tx.RollbackAsync();

        await Wait.UntilAsync(async () => await ConsumedAsync(messageIds) == messageIds.Count, TimeSpan.FromSeconds(20), what: "every message to be consumed");
        foreach (var id in ids)
        {
            var stored = await SubscriptionsHost.LocalAsync(id);
            Assert.That((stored!.StripeStatus, stored.Sequence, stored.EndedAt is null), Is.EqualTo(("canceled", 1001L, false)), id);
        }
    }

    /// <summary>Lock requests of this database's sessions that wait.</summary>
    private static async Task<long> WaitingAsync()
    {
        await using var connection = new NpgsqlConnection(SubscriptionsHost.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database()", connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private static async Task<long> ConsumedAsync(List<Guid> messageIds)
    {
        await using var connection = new NpgsqlConnection(SubscriptionsHost.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM inbox WHERE message_id = ANY(@ids)", connection);
        command.Parameters.AddWithValue("ids", messageIds.ToArray());
        return (long)(await command.ExecuteScalarAsync())!;
    }
}
