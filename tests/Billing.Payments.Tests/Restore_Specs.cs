using System.Net;

namespace Billing.Payments.Tests;

/// <summary>
/// After Payments' database is restored to an earlier point (docs/PRODUCTION.md §9), its subscription mirror's sequences
/// go back; what it publishes next must still outrank what Subscriptions and Usage applied before, or they ignore it
/// and a cancellation or refund made since never reaches them.
/// </summary>
[TestFixture]
[NonParallelizable]
public class After_a_restore_of_Payments_database : WithFakeStripe
{
    private static Task<long> LatestSequenceAsync(string subscriptionId) => PaymentsHost.ScalarAsync(
        "SELECT coalesce(max((payload->>'sequence')::bigint), 0) FROM outbox WHERE payload->>'subscriptionId' = @s", new { s = subscriptionId });

    [Test]
    public async Task The_next_message_outranks_every_message_published_before_it()
    {
        var n = Guid.NewGuid().ToString("N")[..14];
        var subscription = FakeStripe.ActiveSubscription("sub_" + n, "u-" + n, "cus_" + n);
        FakeStripe.Subscription(subscription, StripeAnswer.Ok);
        var (status, answer, _) = await Payments.SendWebhookAsync(FakeStripe.UpdatedEvent("evt_a" + n, subscription));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        var before = await PaymentsHost.EventuallyAsync(() => LatestSequenceAsync("sub_" + n), s => s > 0, "SubscriptionActivated");

        // The restore: the mirror is back at an earlier point, while the consumers keep what they applied.
        await PaymentsHost.ScalarAsync("WITH r AS (UPDATE subscription_mirror SET sequence = 0 WHERE subscription_id = @s RETURNING 1) SELECT count(*) FROM r", new { s = "sub_" + n });
        subscription["cancel_at_period_end"] = true;
        (status, answer, _) = await Payments.SendWebhookAsync(FakeStripe.UpdatedEvent("evt_b" + n, subscription));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);

        var after = await PaymentsHost.EventuallyAsync(() => LatestSequenceAsync("sub_" + n), s => s != before, "the cancellation's SubscriptionUpdated");
        Assert.That(after, Is.GreaterThan(before));
    }
}
