using System.Net;
using Npgsql;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>The catalog's Pro plan has a 14-day trial: once per user.</summary>
[TestFixture]
public class Starting_a_checkout_with_a_trial
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    private static async Task<Subscription> CheckoutAndPayAsync(string user)
    {
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/checkout", new { planId = "pro", interval = "month" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var sessionId = body.GetProperty("checkoutSessionId").GetString()!;
        using var paid = await Host.PayAsync(sessionId);
        Assert.That((int)paid.StatusCode, Is.EqualTo(303), await paid.Content.ReadAsStringAsync());
        var session = await new global::Stripe.Checkout.SessionService(Host.Stripe).GetAsync(sessionId);
        return await new SubscriptionService(Host.Stripe).GetAsync(session.SubscriptionId);
    }

    private static async Task<Subscription> EndAsync(Subscription subscription) =>
        await new SubscriptionService(Host.Stripe).CancelAsync(subscription.Id);

    [Test]
    public async Task A_first_subscription_starts_with_the_trial()
    {
        var subscription = await CheckoutAndPayAsync(SubscriptionsHost.NewUser());
        Assert.That(subscription.Status, Is.EqualTo("trialing"));
    }

    [Test]
    public async Task A_user_who_had_a_subscription_gets_no_second_trial()
    {
        var user = SubscriptionsHost.NewUser();
        var first = await Host.SubscribeAsync(user, "pro", "month");
        var ended = await EndAsync(first);
        await SubscriptionsHost.SaveLocalAsync(user, "pro", ended, sequence: 2, r => r with { EndedAt = DateTimeOffset.UtcNow });

        var second = await CheckoutAndPayAsync(user);

        Assert.That(second.Status, Is.EqualTo("active"));
    }

    [Test]
    public async Task A_customer_whose_past_subscription_Billing_never_stored_gets_no_second_trial()
    {
        var user = SubscriptionsHost.NewUser();
        var first = await Host.SubscribeAsync(user, "pro", "month");
        await EndAsync(first);
        await using (var connection = new NpgsqlConnection(SubscriptionsHost.ConnectionString))
        {
            await connection.OpenAsync();
            await using var delete = new NpgsqlCommand("DELETE FROM subscriptions WHERE subscription_id = @id", connection);
            delete.Parameters.AddWithValue("id", first.Id);
            await delete.ExecuteNonQueryAsync();
        }

        var second = await CheckoutAndPayAsync(user);

        Assert.That(second.Status, Is.EqualTo("active"));
    }
}
