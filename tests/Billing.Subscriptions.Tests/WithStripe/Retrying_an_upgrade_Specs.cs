using System.Net;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>An upgrade the card declined can be retried once the card is fixed, and a double click never charges twice.</summary>
[TestFixture]
public class Retrying_an_upgrade
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    [Test]
    public async Task Succeeds_after_the_card_is_fixed_instead_of_replaying_the_decline()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "month");
        await Host.SetCardAsync(subscription.CustomerId, "4000000000000002");

        var (declined, declinedBody) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });
        Assert.That(declined, Is.EqualTo(HttpStatusCode.PaymentRequired), declinedBody.ToString());

        await Host.SetCardAsync(subscription.CustomerId, "4242424242424242");
        var (retried, retriedBody) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(retried, Is.EqualTo(HttpStatusCode.OK), retriedBody.ToString());
        var after = await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id);
        Assert.That(after.Items.Data[0].Price.LookupKey, Is.EqualTo("business_month"));
    }

    [Test]
    public async Task A_second_click_before_Stripe_s_events_arrive_changes_and_charges_nothing()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "month");

        var (first, firstBody) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });
        var (second, secondBody) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(first, Is.EqualTo(HttpStatusCode.OK), firstBody.ToString());
        Assert.That(second, Is.EqualTo(HttpStatusCode.Conflict), secondBody.ToString());
        Assert.That(secondBody.GetProperty("code").GetString(), Is.EqualTo("no_change"));
        var invoices = await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = subscription.Id, Limit = 100 });
        Assert.That(invoices.Data.Count(i => i.BillingReason == "subscription_update"), Is.EqualTo(1));
    }
}
