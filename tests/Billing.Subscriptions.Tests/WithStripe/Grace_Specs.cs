using Billing.Subscriptions.Api.Consumers;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>The grace watcher asks Stripe before it suspends: a payment whose events are still on their way counts.</summary>
[TestFixture]
public class The_grace_period_running_out
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    private static GraceWatcher Watcher => Host.Services.GetServices<IHostedService>().OfType<GraceWatcher>().Single();

    private static Func<Core.Subscriptions.SubscriptionRecord, Core.Subscriptions.SubscriptionRecord> PastDueAndGraceOver => r => r with
    {
        StripeStatus = "past_due", PastDueSince = DateTimeOffset.UtcNow.AddDays(-2), GraceUntil = DateTimeOffset.UtcNow.AddDays(-1),
    };

    [Test]
    public async Task Does_not_suspend_a_subscription_that_Stripe_says_is_paid_up()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "month");
        await SubscriptionsHost.SaveLocalAsync(user, "pro", subscription, sequence: 2, PastDueAndGraceOver);

        await Watcher.SuspendExpiredAsync(CancellationToken.None);

        var local = await SubscriptionsHost.LocalAsync(subscription.Id);
        Assert.That(local!.SuspendedAt, Is.Null);
        Assert.That((local.StripeStatus, local.GraceUntil), Is.EqualTo(("active", (DateTimeOffset?)null)), "the stored state follows Stripe's");
    }

    [Test]
    public async Task Suspends_a_subscription_that_Stripe_says_is_still_past_due()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "month");
        var stripe = new SubscriptionService(Host.Stripe);
        // Make Stripe's object past due: the next renewal fails with a card that attaches but later declines.
        await Host.SetCardAsync(subscription.CustomerId, "4000000000000341");
        await Hosts.AdvanceSimulatorAsync(subscription.Items.Data[0].CurrentPeriodEnd);
        Assert.That((await stripe.GetAsync(subscription.Id)).Status, Is.EqualTo("past_due"));
        await SubscriptionsHost.SaveLocalAsync(user, "pro", subscription, sequence: 2, PastDueAndGraceOver);

        await Watcher.SuspendExpiredAsync(CancellationToken.None);

        Assert.That((await SubscriptionsHost.LocalAsync(subscription.Id))!.SuspendedAt, Is.Not.Null);
    }

    [Test]
    public async Task The_suspension_names_the_sequence_of_the_update_that_began_the_past_due_episode()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "month");
        await Host.SetCardAsync(subscription.CustomerId, "4000000000000341");
        await Hosts.AdvanceSimulatorAsync(subscription.Items.Data[0].CurrentPeriodEnd);
        await SubscriptionsHost.SaveLocalAsync(user, "pro", subscription, sequence: 7, r => PastDueAndGraceOver(r) with { PastDueSequence = 5 });

        await Watcher.SuspendExpiredAsync(CancellationToken.None);

        await using var connection = new Npgsql.NpgsqlConnection(SubscriptionsHost.ConnectionString);
        await connection.OpenAsync();
        await using var read = new Npgsql.NpgsqlCommand(
            "SELECT (payload->>'pastDueSequence')::bigint FROM outbox WHERE message_type LIKE 'Billing.Contracts.SubscriptionAccessSuspended,%' AND payload->>'subscriptionId' = @id",
            connection);
        read.Parameters.AddWithValue("id", subscription.Id);
        Assert.That(await read.ExecuteScalarAsync(), Is.EqualTo(5L), "Usage compares it with the sequences of the updates it applied");
    }

    [Test]
    public async Task Never_waits_for_a_subscription_the_lifecycle_consumer_is_changing_and_takes_it_at_the_next_tick()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "month");
        await SubscriptionsHost.SaveLocalAsync(user, "pro", subscription, sequence: 2, PastDueAndGraceOver);

        await using (var consumer = new Npgsql.NpgsqlConnection(SubscriptionsHost.ConnectionString))
        {
            await consumer.OpenAsync();
            await using var busy = await consumer.BeginTransactionAsync();
            await using (var lockRow = new Npgsql.NpgsqlCommand("SELECT 1 FROM subscriptions WHERE subscription_id = @id FOR UPDATE", consumer, busy))
            {
                lockRow.Parameters.AddWithValue("id", subscription.Id);
                await lockRow.ExecuteScalarAsync();
            }
            var watching = Watcher.SuspendExpiredAsync(CancellationToken.None);
            Assert.That(await Task.WhenAny(watching, Task.Delay(TimeSpan.FromSeconds(10))), Is.SameAs(watching), "the watcher skips a locked row");
            Assert.That(await watching, Is.Zero);
            await using var read = new Npgsql.NpgsqlCommand("SELECT grace_until IS NOT NULL FROM subscriptions WHERE subscription_id = @id", consumer, busy);
            read.Parameters.AddWithValue("id", subscription.Id);
            Assert.That(await read.ExecuteScalarAsync(), Is.True, "left for the next tick");
        }

        await Watcher.SuspendExpiredAsync(CancellationToken.None); // Stripe says active: the grace is cleared, nothing suspended
        var local = await SubscriptionsHost.LocalAsync(subscription.Id);
        Assert.That((local!.StripeStatus, local.SuspendedAt), Is.EqualTo(("active", (DateTimeOffset?)null)));
    }
}
