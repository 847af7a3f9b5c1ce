using System.Net;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>Stripe resets the billing period when the interval changes, so a downgrade cannot wait for the period end then.</summary>
[TestFixture]
public class Downgrading_to_another_billing_interval
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    [TestCase("pro", "year", "pro", "month")]
    [TestCase("business", "month", "pro", "year")]
    [TestCase("business", "year", "pro", "month")]
    public async Task Is_refused_and_changes_nothing_in_Stripe(string fromPlan, string fromInterval, string toPlan, string toInterval)
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, fromPlan, fromInterval);

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = toPlan, interval = toInterval });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("interval_change_downgrade"));
        var after = await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id);
        Assert.That(after.Items.Data[0].Price.Id, Is.EqualTo(subscription.Items.Data[0].Price.Id));
        Assert.That(after.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(subscription.Items.Data[0].CurrentPeriodEnd));
    }

    [Test]
    public async Task Its_preview_is_refused_the_same_way()
    {
        var user = SubscriptionsHost.NewUser();
        await Host.SubscribeAsync(user, "pro", "year");

        var (status, body) = await Host.GetAsync(user, "/api/subscriptions/me/change-preview?planId=pro&interval=month");

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("interval_change_downgrade"));
    }

    [Test]
    public async Task A_downgrade_that_keeps_the_interval_still_waits_for_the_period_end()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "business", "month");

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("downgrade"));
        var after = await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id);
        Assert.That(after.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(subscription.Items.Data[0].CurrentPeriodEnd));
        Assert.That(after.Metadata["entitledPlanId"], Is.EqualTo("business"));
    }
}
