using Billing.Contracts;
using Npgsql;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>A payment failure reported late, while the subscription is active, must not start a grace period.</summary>
[TestFixture]
public class A_late_payment_failure
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    /// <summary>Pro monthly, started at <paramref name="start"/>, in its second period.</summary>
    private static SubscriptionUpdated UpdatedEvent(string user, string subscriptionId, string customerId, DateTimeOffset start, string status,
        long sequence, DateTimeOffset at) => new()
    {
        UserId = user, SubscriptionId = subscriptionId, CustomerId = customerId, PlanId = "pro", PriceId = "price_pro", Interval = "month",
        IntervalCount = 1, Status = status, CurrentPeriodStart = start.AddDays(30), CurrentPeriodEnd = start.AddDays(60),
        CancelAtPeriodEnd = false, StartedAt = start, Sequence = sequence, OccurredAt = at,
    };

    // Grace periods count from Stripe's time of the past due; the asserts allow a minute for a busy machine.

    [Test]
    public async Task Leaves_a_later_past_due_its_full_grace_period()
    {
        var user = SubscriptionsHost.NewUser();
        var subscriptionId = "sub_late_" + Guid.NewGuid().ToString("N")[..12];
        var start = DateTimeOffset.UtcNow.AddDays(-40);
        SubscriptionUpdated Updated(string status, long sequence, DateTimeOffset at) => UpdatedEvent(user, subscriptionId, "cus_late", start, status, sequence, at);
        await Host.PublishAndWaitAsync(Updated("active", 1, start.AddDays(30)));
        await Host.PublishAndWaitAsync(new InvoicePaymentFailed
        {
            UserId = user, InvoiceId = "in_old", CustomerId = "cus_late", SubscriptionId = subscriptionId, AmountDue = 500, Currency = "usd",
            AttemptCount = 1, OccurredAt = DateTimeOffset.UtcNow.AddDays(-10),
        });
        var local = await SubscriptionsHost.LocalAsync(subscriptionId);
        Assert.That((local!.PastDueSince, local.GraceUntil), Is.EqualTo(((DateTimeOffset?)null, (DateTimeOffset?)null)), "an active subscription has no grace period");

        var pastDueAt = DateTimeOffset.UtcNow;
        await Host.PublishAndWaitAsync(Updated("past_due", 2, pastDueAt));

        local = await SubscriptionsHost.LocalAsync(subscriptionId);
        Assert.That(local!.GraceUntil, Is.EqualTo(pastDueAt.AddDays(1)).Within(TimeSpan.FromMinutes(1)));
        Assert.That(local.SuspendedAt, Is.Null);
    }

    [Test]
    public async Task Paying_an_earlier_periods_invoice_leaves_the_grace_period_of_the_current_one()
    {
        // Past due in the second period; the first period's invoice (still open, say) is paid from its hosted page: the
        // current period's is not, so the grace period runs on; paying that one ends it.
        var user = SubscriptionsHost.NewUser();
        var subscriptionId = "sub_older_" + Guid.NewGuid().ToString("N")[..12];
        var start = DateTimeOffset.UtcNow.AddDays(-40);
        SubscriptionUpdated Updated(string status, long sequence, DateTimeOffset at) => UpdatedEvent(user, subscriptionId, "cus_older", start, status, sequence, at);
        InvoicePaid Paid(string invoiceId, DateTimeOffset periodStart, DateTimeOffset periodEnd) => new()
        {
            UserId = user, InvoiceId = invoiceId, CustomerId = "cus_older", SubscriptionId = subscriptionId, PlanId = "pro",
            BillingReason = "subscription_cycle", AmountPaid = 500, Currency = "usd", PeriodStart = periodStart, PeriodEnd = periodEnd,
            OccurredAt = DateTimeOffset.UtcNow,
        };
        var pastDueAt = DateTimeOffset.UtcNow.AddHours(-1);
        await Host.PublishAndWaitAsync(Updated("past_due", 1, pastDueAt));

        await Host.PublishAndWaitAsync(Paid("in_first", start, start.AddDays(30)));
        var local = await SubscriptionsHost.LocalAsync(subscriptionId);
        Assert.That(local!.GraceUntil, Is.EqualTo(pastDueAt.AddDays(1)).Within(TimeSpan.FromMinutes(1)), "the current period is still unpaid");

        await Host.PublishAndWaitAsync(Paid("in_second", start.AddDays(30), start.AddDays(60)));
        local = await SubscriptionsHost.LocalAsync(subscriptionId);
        Assert.That((local!.PastDueSince, local.GraceUntil), Is.EqualTo(((DateTimeOffset?)null, (DateTimeOffset?)null)));
    }

    [Test]
    public async Task A_new_past_due_after_a_recovery_starts_a_new_grace_period()
    {
        // A row left with an old grace period (as the bug above did) and back to active through an event that was
        // applied without clearing it: entering past_due again must start afresh.
        var user = SubscriptionsHost.NewUser();
        var subscriptionId = "sub_again_" + Guid.NewGuid().ToString("N")[..12];
        var start = DateTimeOffset.UtcNow.AddDays(-40);
        SubscriptionUpdated Updated(string status, long sequence, DateTimeOffset at) => UpdatedEvent(user, subscriptionId, "cus_again", start, status, sequence, at);
        await Host.PublishAndWaitAsync(Updated("active", 1, start.AddDays(30)));
        await using (var connection = new NpgsqlConnection(SubscriptionsHost.ConnectionString))
        {
            await connection.OpenAsync();
            await using var stale = new NpgsqlCommand(
                "UPDATE subscriptions SET past_due_since = @since, grace_until = @until WHERE subscription_id = @id", connection);
            stale.Parameters.AddWithValue("since", DateTimeOffset.UtcNow.AddDays(-10));
            stale.Parameters.AddWithValue("until", DateTimeOffset.UtcNow.AddDays(-9));
            stale.Parameters.AddWithValue("id", subscriptionId);
            await stale.ExecuteNonQueryAsync();
        }

        var pastDueAt = DateTimeOffset.UtcNow;
        await Host.PublishAndWaitAsync(Updated("past_due", 2, pastDueAt));

        var local = await SubscriptionsHost.LocalAsync(subscriptionId);
        Assert.That(local!.PastDueSince, Is.EqualTo(pastDueAt).Within(TimeSpan.FromSeconds(1)));
        Assert.That(local.GraceUntil, Is.EqualTo(pastDueAt.AddDays(1)).Within(TimeSpan.FromMinutes(1)));
        Assert.That(local.PastDueSequence, Is.EqualTo(2), "the episode began with the update of sequence 2");

        await Host.PublishAndWaitAsync(Updated("past_due", 3, pastDueAt.AddMinutes(5))); // the same episode
        Assert.That((await SubscriptionsHost.LocalAsync(subscriptionId))!.PastDueSequence, Is.EqualTo(2));
        await Host.PublishAndWaitAsync(Updated("active", 4, pastDueAt.AddMinutes(9)));
        Assert.That((await SubscriptionsHost.LocalAsync(subscriptionId))!.PastDueSequence, Is.Null);
    }
}
