using System.Net;

namespace Billing.Usage.Tests;

[TestFixture]
public class Following_the_subscription
{
    private static UsageHost Host => Hosts.Default;

    [Test]
    public async Task A_user_nobody_told_us_about_needs_a_subscription()
    {
        var (status, problem) = await Host.ConsumeAsync(UsageHost.NewUser(), UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("no_subscription"));
    }

    [Test]
    public async Task An_out_of_order_older_sequence_is_ignored()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user);
        await Host.ApplyAsync(activated);
        await Host.ApplyAsync(UsageHost.Ended(activated, sequence: 3));
        await Host.ApplyAsync(UsageHost.Updated(activated, "active", sequence: 2));

        var (status, problem) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("no_subscription"));
    }

    [Test]
    public async Task An_ended_subscription_falls_back_to_the_free_plan()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user);
        await Host.ApplyAsync(activated);
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey())).Status, Is.EqualTo(HttpStatusCode.OK));

        await Host.ApplyAsync(UsageHost.Ended(activated, sequence: 2));
        var (status, problem) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("no_subscription"));

        using var client = Host.UserClient(user);
        var entitlements = await UsageHost.BodyAsync(await client.GetAsync("/api/entitlements/me"));
        Assert.That(entitlements.GetProperty("planId").GetString(), Is.EqualTo("free"));
    }

    [Test]
    public async Task A_suspended_subscriber_is_refused_with_payment_past_due_until_active_again()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user);
        await Host.ApplyAsync(activated);
        await Host.ApplyAsync(UsageHost.Updated(activated, "past_due", sequence: 2, occurredAt: DateTimeOffset.UtcNow.AddMinutes(-10)));
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey())).Status, Is.EqualTo(HttpStatusCode.OK), "past_due keeps access in grace");

        await Host.ApplyAsync(UsageHost.Suspended(activated, DateTimeOffset.UtcNow.AddMinutes(-10), DateTimeOffset.UtcNow.AddMinutes(-1)));
        var (status, problem) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("payment_past_due"));
        // What the pages and the product read says the same: nothing to spend, and the plan's features are not theirs now.
        var entitlements = await UsageHost.BodyAsync(await Host.Service.GetAsync($"/api/entitlements/{user}"));
        var free = Billing.Catalog.CatalogLoader.Load(UsageHost.RepoCatalog).Free;
        Assert.That((entitlements.GetProperty("planId").GetString(), entitlements.GetProperty("access").GetString()), Is.EqualTo(("pro", "suspended")));
        Assert.That(entitlements.GetProperty("features").EnumerateArray().Select(f => f.GetString()), Is.EqualTo(free.Features));
        Assert.That(entitlements.GetProperty("meters").EnumerateArray().Select(m => m.GetProperty("remaining").GetInt64()), Is.All.Zero);
        using (var client = Host.UserClient(user))
        {
            var usage = await UsageHost.BodyAsync(await client.GetAsync("/api/usage/me"));
            Assert.That(usage.GetProperty("access").GetString(), Is.EqualTo("suspended"));
            Assert.That(usage.GetProperty("meters")[0].GetProperty("remaining").GetInt64(), Is.Zero);
        }

        await Host.ApplyAsync(UsageHost.Updated(activated, "active", sequence: 3));
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey())).Status, Is.EqualTo(HttpStatusCode.OK));
        var restored = await UsageHost.BodyAsync(await Host.Service.GetAsync($"/api/entitlements/{user}"));
        Assert.That((restored.GetProperty("access").GetString(), restored.GetProperty("meters")[0].GetProperty("remaining").GetInt64()),
            Is.EqualTo(("full", 248L)));
    }

    [Test]
    public async Task A_payment_made_just_before_the_grace_ended_is_not_undone_by_the_suspension_that_followed()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user);
        var now = DateTimeOffset.UtcNow;
        await Host.ApplyAsync(activated);
        await Host.ApplyAsync(UsageHost.Updated(activated, "past_due", sequence: 2, occurredAt: now.AddMinutes(-50)));
        await Host.ApplyAsync(UsageHost.Updated(activated, "active", sequence: 3, occurredAt: now.AddMinutes(-2))); // paid (Stripe's time)
        // Subscriptions had not seen the payment yet when the grace ended a minute later, and suspended the episode.
        await Host.ApplyAsync(UsageHost.Suspended(activated, now.AddMinutes(-50), now.AddMinutes(-1)));
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
    }

    [Test]
    public async Task A_late_suspension_of_a_paid_episode_does_not_suspend_the_next_episode()
    {
        // Past due at -50 min, paid at -40; the next renewal fails at -10 (a new grace period). The first episode's
        // suspension (of the episode that update 2 began) arrives only now: the stored state must still know that an update
        // after 2 said active.
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user);
        var now = DateTimeOffset.UtcNow;
        await Host.ApplyAsync(activated);
        await Host.ApplyAsync(UsageHost.Updated(activated, "past_due", sequence: 2, occurredAt: now.AddMinutes(-50)) with { PreviousStatus = "active" });
        await Host.ApplyAsync(UsageHost.Updated(activated, "active", sequence: 3, occurredAt: now.AddMinutes(-40)) with { PreviousStatus = "past_due" });
        await Host.ApplyAsync(UsageHost.Updated(activated, "past_due", sequence: 4, occurredAt: now.AddMinutes(-10)) with { PreviousStatus = "active" });
        await Host.ApplyAsync(UsageHost.Suspended(activated, now.AddMinutes(-50), now.AddMinutes(-1)) with { PastDueSequence = 2 });
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());

        // The new episode's own suspension does suspend.
        await Host.ApplyAsync(UsageHost.Suspended(activated, now.AddMinutes(-10), now) with { PastDueSequence = 4 });
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey())).Status, Is.EqualTo(HttpStatusCode.PaymentRequired));
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task Paying_the_current_periods_invoice_lifts_a_suspension_whatever_time_the_active_update_carries(bool suspensionLast)
    {
        // Payments stamps an update with the time of the Stripe event that made it re-read the subscription: a late event
        // from the moment the renewal failed publishes 'active' with that same moment. The paid invoice has its own time.
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user);
        var failedAt = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.AddDays(-2).ToUnixTimeSeconds()); // Stripe's: whole seconds
        var suspended = UsageHost.Suspended(activated, failedAt, failedAt.AddDays(1));
        await Host.ApplyAsync(activated);
        await Host.ApplyAsync(UsageHost.Updated(activated, "past_due", sequence: 2, occurredAt: failedAt) with { PreviousStatus = "active" });
        if (!suspensionLast)
        {
            await Host.ApplyAsync(suspended);
        }
        await Host.ApplyAsync(UsageHost.Updated(activated, "active", sequence: 3, occurredAt: failedAt) with { PreviousStatus = "past_due" });
        await Host.ApplyAsync(UsageHost.Paid(activated, activated.CurrentPeriodStart, activated.CurrentPeriodEnd, DateTimeOffset.UtcNow.AddMinutes(-5)));
        if (suspensionLast)
        {
            await Host.ApplyAsync(suspended);
        }
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
    }

    [Test]
    public async Task A_redelivered_message_changes_nothing()
    {
        var user = UsageHost.NewUser();
        var handler = Host.Services.GetService(typeof(Billing.Usage.Api.Subscribers.SubscriberEventsHandler)) as Billing.Usage.Api.Subscribers.SubscriberEventsHandler;
        var id = Guid.NewGuid();
        var change = Billing.Usage.Core.Subscribers.SubscriptionChange.From(UsageHost.Activated(user));
        Assert.That(await handler!.HandleAsync(id, "SubscriptionActivatedConsumer", change, default), Is.True);
        Assert.That(await handler.HandleAsync(id, "SubscriptionActivatedConsumer", change, default), Is.False);
    }

    [Test]
    public async Task Entitlements_of_any_user_need_the_usage_scope()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user));
        var response = await Host.Service.GetAsync($"/api/entitlements/{user}");
        var body = await UsageHost.BodyAsync(response);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(body.GetProperty("planId").GetString(), Is.EqualTo("pro"));
        Assert.That(body.GetProperty("features").EnumerateArray().Select(f => f.GetString()), Does.Contain("ai_access"));
        Assert.That(body.GetProperty("meters")[0].GetProperty("remaining").GetInt64(), Is.EqualTo(250));

        using var client = Host.UserClient(user);
        Assert.That((await client.GetAsync($"/api/entitlements/{user}")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
    }
}
