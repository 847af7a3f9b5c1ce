using System.Net;
using System.Text.Json.Nodes;

namespace Billing.Payments.Tests;

/// <summary>
/// A downgrade to another billing interval waits in a Stripe subscription schedule. Payments re-reads the subscription on
/// the schedule's events too and publishes the change that waits (<c>scheduledChange</c>) with the subscription: the
/// schedule's next price first, then a downgrade within the interval recorded in the metadata, then nothing. The real Payments API on PostgreSQL and RabbitMQ; Stripe is WireMock.
/// </summary>
[TestFixture]
[NonParallelizable]
public class A_downgrade_waiting_in_a_subscription_schedule : WithFakeStripe
{
    private static string ScheduleEvent(string eventId, string type, JsonObject schedule) => FakeStripe.Event(eventId, type, schedule);

    private static JsonObject Phase(long start, long end, string priceId) => new()
    {
        ["start_date"] = start, ["end_date"] = end, ["metadata"] = new JsonObject(), ["proration_behavior"] = "none",
        ["items"] = new JsonArray(new JsonObject { ["price"] = priceId, ["quantity"] = 1, ["metadata"] = new JsonObject() }),
    };

    private static Task<long> OutboxAsync(string subscriptionId, string condition) =>
        PaymentsHost.ScalarAsync($"SELECT count(*) FROM outbox WHERE payload->>'subscriptionId' = @s AND {condition}", new { s = subscriptionId });

    [Test]
    public async Task Is_published_with_the_subscription_until_nothing_waits_any_more()
    {
        var n = Guid.NewGuid().ToString("N")[..14];
        var (subscriptionId, scheduleId) = ("sub_" + n, "sub_sched_" + n);
        var subscription = FakeStripe.ActiveSubscription(subscriptionId, "u-" + n, "cus_" + n);
        var item = subscription["items"]!["data"]![0]!;
        var (start, end) = (item["current_period_start"]!.GetValue<long>(), item["current_period_end"]!.GetValue<long>());
        subscription["schedule"] = scheduleId;
        // A downgrade within the interval was also made before (its record in the metadata): the schedule's change comes next.
        subscription["metadata"]!["entitledPlanId"] = "pro";
        subscription["metadata"]!["entitledPlanUntil"] = end.ToString(System.Globalization.CultureInfo.InvariantCulture);
        FakeStripe.Subscription(subscription, StripeAnswer.Ok);
        var schedule = new JsonObject
        {
            ["id"] = scheduleId, ["object"] = "subscription_schedule", ["status"] = "active", ["subscription"] = subscriptionId,
            ["customer"] = "cus_" + n, ["end_behavior"] = "release", ["released_subscription"] = null, ["metadata"] = new JsonObject(),
            ["current_phase"] = new JsonObject { ["start_date"] = start, ["end_date"] = end },
            ["phases"] = new JsonArray(Phase(start, end, "price_pro_month"), Phase(end, end + 365 * 86400, "price_pro_year")),
        };
        FakeStripe.Object("/v1/subscription_schedules/" + scheduleId, schedule);
        var yearly = FakeStripe.ActiveSubscription("sub_y" + n, "u-y", "cus_y")["items"]!["data"]![0]!["price"]!.DeepClone().AsObject();
        yearly["id"] = "price_pro_year";
        yearly["lookup_key"] = "pro_year";
        yearly["unit_amount"] = 5000;
        yearly["recurring"]!["interval"] = "year";
        FakeStripe.Object("/v1/prices/price_pro_year", yearly);

        var (status, answer, _) = await Payments.SendWebhookAsync(ScheduleEvent("evt_a" + n, "subscription_schedule.created", schedule));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        var effectiveAt = DateTimeOffset.FromUnixTimeSeconds(end).ToString("yyyy-MM-ddTHH:mm:ss");
        await PaymentsHost.EventuallyAsync(() => OutboxAsync(subscriptionId,
                $"payload->'scheduledChange'->>'planId' = 'pro' AND payload->'scheduledChange'->>'interval' = 'year' AND payload->'scheduledChange'->>'effectiveAt' LIKE '{effectiveAt}%'"),
            count => count == 1, "the subscription published with the change that waits");

        schedule["status"] = "released";
        schedule["released_subscription"] = subscriptionId;
        schedule["subscription"] = null;
        subscription["schedule"] = null;
        (status, answer, _) = await Payments.SendWebhookAsync(ScheduleEvent("evt_b" + n, "subscription_schedule.released", schedule));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        await PaymentsHost.EventuallyAsync(() => OutboxAsync(subscriptionId, "payload->'scheduledChange'->>'interval' = 'month'"),
            count => count == 1, "an update with the downgrade within the interval, which still waits");

        subscription["metadata"]!["entitledPlanId"] = "";
        subscription["metadata"]!["entitledPlanUntil"] = "";
        (status, answer, _) = await Payments.SendWebhookAsync(FakeStripe.UpdatedEvent("evt_c" + n, subscription));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        await PaymentsHost.EventuallyAsync(() => OutboxAsync(subscriptionId, "coalesce(jsonb_typeof(payload->'scheduledChange'), 'null') = 'null'"),
            count => count == 1, "an update without a scheduled change");
        Assert.That(await OutboxAsync(subscriptionId, "true"), Is.EqualTo(3));
    }

    [Test]
    public async Task A_downgrade_within_the_interval_holds_only_while_Stripe_bills_the_price_it_put_on_the_item()
    {
        var n = Guid.NewGuid().ToString("N")[..14];
        var subscriptionId = "sub_" + n;
        var subscription = FakeStripe.ActiveSubscription(subscriptionId, "u-" + n, "cus_" + n);
        var end = subscription["items"]!["data"]![0]!["current_period_end"]!.GetValue<long>();
        subscription["metadata"]!["entitledPlanId"] = "pro";
        subscription["metadata"]!["entitledPlanUntil"] = end.ToString(System.Globalization.CultureInfo.InvariantCulture);
        subscription["metadata"]!["downgradedPriceId"] = "price_pro_month"; // the price the item bills
        FakeStripe.Subscription(subscription, StripeAnswer.Ok);

        var (status, answer, _) = await Payments.SendWebhookAsync(FakeStripe.UpdatedEvent("evt_a" + n, subscription));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        await PaymentsHost.EventuallyAsync(() => OutboxAsync(subscriptionId, "jsonb_typeof(payload->'scheduledChange') = 'object'"),
            count => count == 1, "the downgrade that waits for the period end");

        // A plan switched in the customer portal since: the item bills another price than the one the downgrade put there.
        subscription["items"]!["data"]![0]!["price"]!["id"] = "price_pro_month_v2";
        (status, answer, _) = await Payments.SendWebhookAsync(FakeStripe.UpdatedEvent("evt_b" + n, subscription));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        await PaymentsHost.EventuallyAsync(() => OutboxAsync(subscriptionId, "coalesce(jsonb_typeof(payload->'scheduledChange'), 'null') = 'null'"),
            count => count == 1, "the price Stripe bills is the plan, and nothing waits");
    }
}
