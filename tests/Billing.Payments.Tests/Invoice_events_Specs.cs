using System.Net;
using System.Text.Json.Nodes;

namespace Billing.Payments.Tests;

/// <summary>
/// Invoice webhooks are decided on the invoice as Stripe holds it now, not on the event's snapshot. The real Payments API
/// on PostgreSQL and RabbitMQ; Stripe's API is WireMock.
/// </summary>
[TestFixture]
[NonParallelizable]
public class Invoice_events_read_the_invoice_again : WithFakeStripe
{
    [TestCase("paid", 0)]
    [TestCase("void", 0)]
    [TestCase("uncollectible", 0)]
    [TestCase("open", 1)]
    public async Task Should_publish_a_payment_failure_only_for_an_invoice_that_is_still_open(string statusNow, int failuresPublished)
    {
        var (subscriptionId, invoiceId) = NewSubscription();
        // The event's snapshot says open; Stripe's invoice is now in another state (a late or reordered delivery).
        var snapshot = Invoice(invoiceId, subscriptionId, "open");
        FakeStripe.Object("/v1/invoices/" + invoiceId, Invoice(invoiceId, subscriptionId, statusNow));

        var eventId = await SendAsync("invoice.payment_failed", snapshot);
        await ProcessedAsync(eventId);

        Assert.That(await OutboxCountAsync("InvoicePaymentFailed", invoiceId), Is.EqualTo(failuresPublished));
        Assert.That(await PaymentsHost.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.SubscriptionActivated,%' AND payload->>'subscriptionId' = @s",
            new { s = subscriptionId }), Is.EqualTo(1), "the subscription is synced from Stripe either way");
    }

    [Test]
    public async Task Should_record_the_payment_intent_that_paid_the_invoice_not_a_canceled_earlier_one()
    {
        var (subscriptionId, invoiceId) = NewSubscription();
        var n = invoiceId[3..];
        var (canceled, paid) = ("pi_old" + n, "pi_new" + n);
        FakeStripe.Object("/v1/payment_intents/" + canceled, PaymentIntent(canceled, "canceled", "ch_old" + n));
        FakeStripe.Object("/v1/payment_intents/" + paid, PaymentIntent(paid, "succeeded", "ch_new" + n));
        var payments = new JsonArray(InvoicePayment("inpay_1" + n, invoiceId, canceled, "canceled"), InvoicePayment("inpay_2" + n, invoiceId, paid, "paid"));
        var invoice = Invoice(invoiceId, subscriptionId, "paid", payments);
        FakeStripe.Object("/v1/invoices/" + invoiceId, invoice);

        await ProcessedAsync(await SendAsync("invoice.paid", invoice));

        await using var connection = new Npgsql.NpgsqlConnection(PaymentsHost.ConnectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand("SELECT payment_intent_id || ' ' || charge_id FROM payments WHERE id = @id", connection);
        command.Parameters.AddWithValue("id", invoiceId);
        Assert.That(await command.ExecuteScalarAsync(), Is.EqualTo($"{paid} ch_new{n}"), "the payment that a refund must go to");
        Assert.That(await PaymentsHost.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.InvoicePaid,%' AND payload->>'paymentIntentId' = @paid",
            new { paid }), Is.EqualTo(1));
    }

    [Test]
    public async Task Should_publish_the_period_a_change_of_interval_pays_for_not_the_credit_for_the_old_price_s_unused_time()
    {
        // Yearly to monthly, mid-year: Stripe resets the billing cycle; the invoice credits the yearly price up to the old
        // period's end (months away) and charges the first month of the new one.
        var (subscriptionId, invoiceId) = NewSubscription();
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var n = invoiceId[3..];
        FakeStripe.Object("/v1/payment_intents/pi_" + n, PaymentIntent("pi_" + n, "succeeded", "ch_" + n));
        var invoice = Invoice(invoiceId, subscriptionId, "paid", new JsonArray(InvoicePayment("inpay_" + n, invoiceId, "pi_" + n, "paid")));
        invoice["billing_reason"] = "subscription_update";
        invoice["lines"]!["data"] = new JsonArray(
            Line("il_credit" + invoiceId[3..], -12_000, now, now + 200 * 86_400),
            Line("il_new" + invoiceId[3..], 5_000, now, now + 30 * 86_400));
        FakeStripe.Object("/v1/invoices/" + invoiceId, invoice);

        await ProcessedAsync(await SendAsync("invoice.paid", invoice));

        Assert.That(await PaymentsHost.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.InvoicePaid,%' AND payload->>'invoiceId' = @invoiceId AND (payload->>'periodEnd')::timestamptz = to_timestamp(@end)",
            new { invoiceId, end = (double)(now + 30 * 86_400) }), Is.EqualTo(1));
    }

    private static JsonObject Line(string id, long amount, long start, long end) => new()
    {
        ["id"] = id, ["object"] = "line_item", ["amount"] = amount, ["currency"] = "usd", ["description"] = null, ["livemode"] = false,
        ["metadata"] = new JsonObject(), ["period"] = new JsonObject { ["start"] = start, ["end"] = end }, ["quantity"] = 1,
    };

    private static JsonObject InvoicePayment(string id, string invoiceId, string paymentIntentId, string status) => new()
    {
        ["id"] = id, ["object"] = "invoice_payment", ["amount_paid"] = status == "paid" ? 500 : null, ["amount_requested"] = 500,
        ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), ["currency"] = "usd", ["invoice"] = invoiceId, ["is_default"] = status == "paid",
        ["livemode"] = false, ["payment"] = new JsonObject { ["type"] = "payment_intent", ["payment_intent"] = paymentIntentId }, ["status"] = status,
        ["status_transitions"] = new JsonObject { ["canceled_at"] = null, ["paid_at"] = null },
    };

    private static JsonObject PaymentIntent(string id, string status, string chargeId) => new()
    {
        ["id"] = id, ["object"] = "payment_intent", ["amount"] = 500, ["currency"] = "usd", ["status"] = status, ["livemode"] = false,
        ["latest_charge"] = new JsonObject
        {
            ["id"] = chargeId, ["object"] = "charge", ["amount"] = 500, ["amount_refunded"] = 0, ["currency"] = "usd", ["payment_intent"] = id,
            ["paid"] = status == "succeeded", ["receipt_url"] = "https://receipt.example/" + chargeId, ["refunded"] = false,
            ["status"] = status == "succeeded" ? "succeeded" : "failed",
        },
    };

    [Test]
    public async Task Should_be_done_with_the_events_of_another_product_s_subscription_on_the_same_Stripe_account()
    {
        // No Billing metadata on the subscription, its price or its customer, and a price no catalog knows: not Billing's.
        // Each of its events is done with at the first attempt, instead of failing 12 times and joining the failed list
        // that admins replay (and that alerts).
        var n = Guid.NewGuid().ToString("N")[..14];
        var (subscriptionId, invoiceId, customerId) = ("sub_" + n, "in_" + n, "cus_" + n);
        var foreign = FakeStripe.ActiveSubscription(subscriptionId, "x", customerId);
        foreign["metadata"] = new JsonObject();
        var price = foreign["items"]!["data"]![0]!["price"]!.AsObject();
        (price["id"], price["lookup_key"], price["metadata"]) = ("price_other_" + n, "other_product_month", new JsonObject());
        FakeStripe.Subscription(foreign, StripeAnswer.Ok);
        FakeStripe.Object("/v1/customers/" + customerId, new JsonObject
        {
            ["id"] = customerId, ["object"] = "customer", ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), ["email"] = null,
            ["livemode"] = false, ["metadata"] = new JsonObject(),
        });
        FakeStripe.Object("/v1/invoices/" + invoiceId, Invoice(invoiceId, subscriptionId, "open"));

        var updated = await SendAsync("customer.subscription.updated", foreign);
        var failed = await SendAsync("invoice.payment_failed", Invoice(invoiceId, subscriptionId, "open"));

        await ProcessedAsync(updated);
        await ProcessedAsync(failed);
        foreach (var eventId in new[] { updated, failed })
        {
            Assert.That((await Payments.StoredEventAsync(eventId))!.Value.GetProperty("attempts").GetInt32(), Is.EqualTo(1), eventId);
        }
        Assert.That(await PaymentsHost.ScalarAsync("SELECT count(*) FROM outbox WHERE payload->>'subscriptionId' = @subscriptionId", new { subscriptionId }),
            Is.Zero, "nothing published about it");
    }

    private (string SubscriptionId, string InvoiceId) NewSubscription()
    {
        var n = Guid.NewGuid().ToString("N")[..14];
        var subscriptionId = "sub_" + n;
        FakeStripe.Subscription(FakeStripe.ActiveSubscription(subscriptionId, "u-" + n, "cus_" + n), StripeAnswer.Ok);
        return (subscriptionId, "in_" + n);
    }

    /// <summary>A subscription renewal invoice in Stripe's shape (endive: the subscription is under parent.subscription_details).</summary>
    internal static JsonObject Invoice(string invoiceId, string subscriptionId, string status, JsonArray? payments = null)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var paid = status == "paid";
        var invoice = new JsonObject
        {
            ["id"] = invoiceId, ["object"] = "invoice", ["amount_due"] = 500, ["amount_paid"] = paid ? 500 : 0, ["amount_remaining"] = paid ? 0 : 500,
            ["attempt_count"] = 1, ["attempted"] = true, ["billing_reason"] = "subscription_cycle", ["collection_method"] = "charge_automatically",
            ["created"] = now, ["currency"] = "usd", ["customer"] = "cus_" + subscriptionId[4..], ["description"] = null,
            ["hosted_invoice_url"] = "https://invoice.example/" + invoiceId, ["livemode"] = false, ["metadata"] = new JsonObject(),
            ["next_payment_attempt"] = status == "open" ? now + 86_400 : null,
            ["parent"] = new JsonObject
            {
                ["type"] = "subscription_details",
                ["subscription_details"] = new JsonObject { ["subscription"] = subscriptionId, ["metadata"] = new JsonObject() },
            },
            ["period_end"] = now, ["period_start"] = now - 2_592_000, ["status"] = status,
            ["status_transitions"] = new JsonObject { ["paid_at"] = paid ? now : null },
            ["lines"] = new JsonObject { ["object"] = "list", ["data"] = new JsonArray(), ["has_more"] = false, ["url"] = $"/v1/invoices/{invoiceId}/lines" },
        };
        if (payments is not null)
        {
            invoice["payments"] = new JsonObject { ["object"] = "list", ["data"] = payments, ["has_more"] = false, ["url"] = "/v1/invoice_payments" };
        }
        return invoice;
    }

    private async Task<string> SendAsync(string type, JsonObject invoice)
    {
        var eventId = "evt_" + Guid.NewGuid().ToString("N")[..14];
        var body = FakeStripe.Event(eventId, type, invoice);
        var (status, answer, _) = await Payments.SendWebhookAsync(body);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        return eventId;
    }

    private async Task ProcessedAsync(string eventId)
    {
        var done = await PaymentsHost.EventuallyAsync(() => Payments.StoredEventAsync(eventId),
            e => e?.GetProperty("status").GetString() is "processed" or "failed", "the event to be processed");
        Assert.That(done!.Value.GetProperty("status").GetString(), Is.EqualTo("processed"), done.Value.ToString());
    }

    private static Task<long> OutboxCountAsync(string messageType, string invoiceId) => PaymentsHost.ScalarAsync(
        "SELECT count(*) FROM outbox WHERE message_type LIKE @type AND payload->>'invoiceId' = @invoiceId",
        new { type = $"Billing.Contracts.{messageType},%", invoiceId });
}
