using Billing.Contracts;
using Billing.Contracts.Values;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary><c>GET /api/subscriptions/me</c> shows the change that waits for the period end, as Payments' messages say.</summary>
[TestFixture]
public class A_scheduled_change
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    [Test]
    public async Task Is_shown_until_a_message_without_it_and_hidden_while_a_cancellation_is_pending()
    {
        var user = SubscriptionsHost.NewUser();
        var now = DateTimeOffset.UtcNow;
        var start = new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, now.Minute, now.Second, TimeSpan.Zero).AddDays(-20);
        var next = new ScheduledPlanChange { PlanId = "pro", PriceId = "price_pro_month", Interval = "month", IntervalCount = 1, EffectiveAt = start.AddYears(1) };
        SubscriptionUpdated Updated(long sequence, ScheduledPlanChange? change, bool cancel = false) => new()
        {
            UserId = user, SubscriptionId = "sub_sched_view_" + user, CustomerId = "cus_" + user, PlanId = "pro", PriceId = "price_pro_year",
            Interval = "year", IntervalCount = 1, Status = "active", CurrentPeriodStart = start, CurrentPeriodEnd = start.AddYears(1),
            CancelAtPeriodEnd = cancel, StartedAt = start, ScheduledChange = change, Sequence = sequence, OccurredAt = DateTimeOffset.UtcNow,
        };

        await Host.PublishAndWaitAsync(Updated(1, next));
        var (_, shown) = await Host.GetAsync(user, "/api/subscriptions/me");
        var scheduled = shown.GetProperty("scheduledChange");
        Assert.That((scheduled.GetProperty("planId").GetString(), scheduled.GetProperty("interval").GetString(), scheduled.GetProperty("intervalCount").GetInt32()),
            Is.EqualTo(("pro", "month", 1)));
        Assert.That(scheduled.GetProperty("effectiveAt").GetDateTimeOffset(), Is.EqualTo(start.AddYears(1)));

        await Host.PublishAndWaitAsync(Updated(2, next, cancel: true));
        Assert.That((await Host.GetAsync(user, "/api/subscriptions/me")).Body.GetProperty("scheduledChange").ValueKind, Is.EqualTo(System.Text.Json.JsonValueKind.Null),
            "a subscription that ends has no next plan");

        await Host.PublishAndWaitAsync(Updated(3, null));
        Assert.That((await Host.GetAsync(user, "/api/subscriptions/me")).Body.GetProperty("scheduledChange").ValueKind, Is.EqualTo(System.Text.Json.JsonValueKind.Null));
    }
}
