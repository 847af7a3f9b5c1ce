using System.Net;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

[TestFixture]
public class Cancelling_resuming_and_cancelling_again
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    [Test]
    public async Task Before_Stripe_s_events_arrive_leaves_the_subscription_cancelling()
    {
        // No Payments here: the stored subscription (and its sequence) never changes between the three requests.
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "month");

        var (cancel, _) = await Host.PostAsync(user, "/api/subscriptions/me/cancel");
        var (resume, _) = await Host.PostAsync(user, "/api/subscriptions/me/resume");
        var (again, body) = await Host.PostAsync(user, "/api/subscriptions/me/cancel");

        Assert.That((cancel, resume, again), Is.EqualTo((HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK)));
        Assert.That(body.GetProperty("cancelAtPeriodEnd").GetBoolean(), Is.True);
        var after = await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id);
        Assert.That(after.CancelAtPeriodEnd, Is.True, "Stripe's subscription ends at the period end, as the answer said");
    }
}
