using System.Net;
using System.Text.Json.Nodes;

namespace Billing.Payments.Tests;

/// <summary>
/// Stripe's <c>customer.subscription.trial_will_end</c> becomes <c>SubscriptionTrialEndingAnnounced</c>, which says whether a
/// payment method is on file: a trial can start without a card, and "add a card or the trial ends" is another message than
/// "your card will be charged". The real Payments API on PostgreSQL and RabbitMQ; Stripe's API is WireMock.
/// </summary>
[TestFixture]
[NonParallelizable]
public class Announcing_a_trial_s_end : WithFakeStripe
{
    [TestCase("pm_card_visa", null, true)]
    [TestCase(null, "pm_card_visa", true)]
    [TestCase(null, null, false)]
    public async Task Says_whether_a_payment_method_is_on_file(string? subscriptionDefault, string? customerDefault, bool onFile)
    {
        var n = Guid.NewGuid().ToString("N")[..14];
        var (subscriptionId, customerId) = ("sub_" + n, "cus_" + n);
        var subscription = FakeStripe.ActiveSubscription(subscriptionId, "u-" + n, customerId);
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        subscription["status"] = "trialing";
        subscription["trial_start"] = now - 4 * 86_400;
        subscription["trial_end"] = now + 3 * 86_400;
        subscription["default_payment_method"] = subscriptionDefault;
        FakeStripe.Subscription(subscription, StripeAnswer.Ok);
        FakeStripe.Object("/v1/customers/" + customerId, new JsonObject
        {
            ["id"] = customerId, ["object"] = "customer", ["created"] = now, ["default_source"] = null, ["email"] = $"u-{n}@example.test",
            ["invoice_settings"] = new JsonObject { ["custom_fields"] = null, ["default_payment_method"] = customerDefault, ["footer"] = null },
            ["livemode"] = false, ["metadata"] = new JsonObject { ["userId"] = "u-" + n },
        });
        var eventId = "evt_" + Guid.NewGuid().ToString("N")[..14];
        var body = FakeStripe.Event(eventId, "customer.subscription.trial_will_end", subscription, now);

        var (status, answer, _) = await Payments.SendWebhookAsync(body);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        var done = await PaymentsHost.EventuallyAsync(() => Payments.StoredEventAsync(eventId),
            e => e?.GetProperty("status").GetString() is "processed" or "failed", "the event to be processed");
        Assert.That(done!.Value.GetProperty("status").GetString(), Is.EqualTo("processed"), done.Value.ToString());
        Assert.That(await PaymentsHost.ScalarAsync(
            """
            SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.SubscriptionTrialEndingAnnounced,%'
            AND payload->>'subscriptionId' = @subscriptionId AND (payload->>'hasPaymentMethod')::boolean = @onFile
            """, new { subscriptionId, onFile }), Is.EqualTo(1));
    }
}
