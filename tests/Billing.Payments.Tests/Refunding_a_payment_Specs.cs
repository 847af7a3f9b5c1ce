using Microsoft.Extensions.DependencyInjection;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Billing.Payments.Tests;

/// <summary>
/// An admin refund sent with an <c>Idempotency-Key</c>: the same key is one refund however often it is sent, also after
/// Stripe's <c>charge.refunded</c> changed the payment's refunded amount; two keys are two refunds, also before the webhook
/// lands. The real Payments API on PostgreSQL and RabbitMQ; Stripe's API is WireMock.
/// </summary>
[TestFixture]
[NonParallelizable]
public class Refunding_a_payment_with_an_idempotency_key : WithFakeStripe
{
    [Test]
    public async Task Should_refund_once_when_the_same_forced_partial_refund_is_retried_after_the_webhook_was_applied()
    {
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);
        var key = "refund-" + Guid.NewGuid().ToString("N");

        var first = await RefundAsync(paymentIntentId, 1000, key);
        Assert.That(first.Status, Is.EqualTo(HttpStatusCode.OK), first.Body);
        // Stripe refunded; its charge.refunded lands before the admin, who never saw the answer, sends the request again.
        await ChargeRefundedWebhookAsync(chargeId);
        await RefundedAmountAsync(paymentIntentId, 1000);

        var retry = await RefundAsync(paymentIntentId, 1000, key);
        Assert.That(retry.Status, Is.EqualTo(HttpStatusCode.OK), retry.Body);
        Assert.That(RefundId(retry.Body), Is.EqualTo(RefundId(first.Body)), "the retry answers with the refund made the first time");
        Assert.That(RefundsOf(chargeId), Has.Count.EqualTo(1), "Stripe refunded once");
        Assert.That(FakeStripe.ObjectAt("/v1/charges/" + chargeId)["amount_refunded"]!.GetValue<long>(), Is.EqualTo(1000));
        Assert.That(await PaymentsHost.ScalarAsync("SELECT amount_refunded FROM payments WHERE id = @id", new { id = paymentIntentId }), Is.EqualTo(1000));
    }

    [Test]
    public async Task Should_answer_with_the_same_refund_when_the_key_is_sent_again_after_Stripe_forgot_it()
    {
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);
        var key = "refund-" + Guid.NewGuid().ToString("N");
        var first = await RefundAsync(paymentIntentId, 1000, key);
        Assert.That(first.Status, Is.EqualTo(HttpStatusCode.OK), first.Body);

        FakeStripe.ForgetIdempotencyKeys(); // a day later
        var retry = await RefundAsync(paymentIntentId, 1000, key);
        Assert.That(retry.Status, Is.EqualTo(HttpStatusCode.OK), retry.Body);
        Assert.That(RefundId(retry.Body), Is.EqualTo(RefundId(first.Body)));
        Assert.That(RefundsOf(chargeId), Has.Count.EqualTo(1), "Stripe refunded once");
    }

    [Test]
    public async Task Should_find_the_refund_Stripe_made_when_its_answer_was_lost_and_Stripe_forgot_the_key()
    {
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);
        var key = "refund-" + Guid.NewGuid().ToString("N");
        FakeStripe.LoseNextRefundAnswer();
        var lost = await RefundAsync(paymentIntentId, 1000, key);
        Assert.That(lost.Status, Is.Not.EqualTo(HttpStatusCode.OK), lost.Body);
        Assert.That(RefundsOf(chargeId), Has.Count.EqualTo(1), "Stripe made it all the same");

        var retry = await RefundAsync(paymentIntentId, 1000, key); // a day later: Stripe no longer knows the key
        Assert.That(retry.Status, Is.EqualTo(HttpStatusCode.OK), retry.Body);
        Assert.That(RefundId(retry.Body), Is.EqualTo(RefundsOf(chargeId)[0]["id"]!.GetValue<string>()));
        Assert.That(RefundsOf(chargeId), Has.Count.EqualTo(1), "found by the key it carries, not made again");
    }

    [Test]
    public async Task Should_refund_twice_when_two_equal_partial_refunds_carry_two_keys_before_the_webhook_lands()
    {
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);

        var first = await RefundAsync(paymentIntentId, 1000, "first-" + Guid.NewGuid().ToString("N"));
        var second = await RefundAsync(paymentIntentId, 1000, "second-" + Guid.NewGuid().ToString("N"));
        Assert.That(first.Status, Is.EqualTo(HttpStatusCode.OK), first.Body);
        Assert.That(second.Status, Is.EqualTo(HttpStatusCode.OK), second.Body);
        Assert.That(RefundId(second.Body), Is.Not.EqualTo(RefundId(first.Body)));
        Assert.That(RefundsOf(chargeId), Has.Count.EqualTo(2), "two deliberate refunds are two refunds");

        await ChargeRefundedWebhookAsync(chargeId);
        await RefundedAmountAsync(paymentIntentId, 2000);
    }

    [Test]
    public async Task Should_answer_400_for_a_malformed_key_and_409_when_a_key_is_reused_for_another_amount()
    {
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);

        foreach (var bad in new[] { new string('k', 129), "has space", "slash/y" })
        {
            var malformed = await RefundAsync(paymentIntentId, 1000, bad);
            Assert.That(malformed.Status, Is.EqualTo(HttpStatusCode.BadRequest), $"'{bad}': {malformed.Body}");
            Assert.That(JsonDocument.Parse(malformed.Body).RootElement.GetProperty("errors").TryGetProperty("Idempotency-Key", out _), Is.True, malformed.Body);
        }
        Assert.That(RefundsOf(chargeId), Is.Empty, "a bad request changes nothing");

        var key = "k:" + Guid.NewGuid().ToString("N") + ".1_a-b";
        Assert.That((await RefundAsync(paymentIntentId, 1000, key)).Status, Is.EqualTo(HttpStatusCode.OK));
        var other = await RefundAsync(paymentIntentId, 2000, key);
        Assert.That(other.Status, Is.EqualTo(HttpStatusCode.Conflict), other.Body);
        Assert.That(JsonDocument.Parse(other.Body).RootElement.GetProperty("code").GetString(), Is.EqualTo("idempotency_conflict"));
        Assert.That(RefundsOf(chargeId), Has.Count.EqualTo(1));
    }

    [Test]
    public async Task A_refund_whose_payment_is_not_recorded_yet_waits_for_it_past_the_attempts_limit()
    {
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);
        var payment = await PaymentsHost.ScalarAsync(
            "WITH gone AS (DELETE FROM payments WHERE id = @id RETURNING 1) SELECT count(*) FROM gone", new { id = paymentIntentId });
        Assert.That(payment, Is.EqualTo(1), "as if the checkout's own event had not been applied yet");
        FakeStripe.Object("/v1/payment_intents/" + paymentIntentId, new JsonObject
        {
            ["id"] = paymentIntentId, ["object"] = "payment_intent", ["amount"] = 5000L, ["currency"] = "usd", ["status"] = "succeeded",
            ["metadata"] = new JsonObject { ["userId"] = "u-" + paymentIntentId[3..], ["kind"] = "token_pack" },
        });
        var charge = FakeStripe.ObjectAt("/v1/charges/" + chargeId);
        charge["amount_refunded"] = 5000L;
        charge["refunded"] = true;

        await ChargeRefundedWebhookAsync(chargeId);
        await PaymentsHost.EventuallyAsync(() => PaymentsHost.ScalarAsync(
                "SELECT attempts FROM stripe_events WHERE type = 'charge.refunded' AND object_id = @chargeId", new { chargeId }),
            attempts => attempts > PaymentsHost.MaxAttempts + 1, "more attempts than the limit");
        Assert.That(await PaymentsHost.ScalarAsync(
            "SELECT count(*) FROM stripe_events WHERE type = 'charge.refunded' AND object_id = @chargeId AND status = 'pending'", new { chargeId }),
            Is.EqualTo(1), "still waiting, not parked for an admin");

        await RecordPaymentAsync(paymentIntentId, chargeId, 5000); // the checkout's event is applied at last
        await RefundedAmountAsync(paymentIntentId, 5000);
    }

    [Test]
    public async Task A_refund_of_a_charge_that_is_not_Billings_is_let_go_instead_of_waiting_forever()
    {
        // Another product on the same Stripe account: no payment recorded, no Billing metadata on its payment intent or
        // customer (neither is even known here).
        var n = Guid.NewGuid().ToString("N")[..14];
        var chargeId = "ch_other_" + n;
        FakeStripe.Object("/v1/charges/" + chargeId, new JsonObject
        {
            ["id"] = chargeId, ["object"] = "charge", ["amount"] = 900L, ["amount_captured"] = 900L, ["amount_refunded"] = 900L,
            ["captured"] = true, ["created"] = DateTimeOffset.UtcNow.AddDays(-1).ToUnixTimeSeconds(), ["currency"] = "usd",
            ["customer"] = "cus_other_" + n, ["livemode"] = false, ["metadata"] = new JsonObject(), ["paid"] = true,
            ["payment_intent"] = "pi_other_" + n, ["receipt_url"] = null, ["refunded"] = true, ["status"] = "succeeded",
        });

        await ChargeRefundedWebhookAsync(chargeId);
        await PaymentsHost.EventuallyAsync(() => PaymentsHost.ScalarAsync(
                "SELECT count(*) FROM stripe_events WHERE type = 'charge.refunded' AND object_id = @chargeId AND status = 'processed'", new { chargeId }),
            processed => processed == 1, "the event done with");
        Assert.That(await PaymentsHost.ScalarAsync(
            "SELECT attempts FROM stripe_events WHERE type = 'charge.refunded' AND object_id = @chargeId", new { chargeId }), Is.EqualTo(1),
            "done with at the first attempt");
    }

    [Test]
    public async Task A_chargeback_is_recorded_on_the_payment_and_published_once_and_its_close_recorded_too()
    {
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);
        var disputeId = "dp_" + Guid.NewGuid().ToString("N")[..14];
        DisputeOf(disputeId, chargeId, paymentIntentId, "fraudulent", "needs_response");

        await DisputeWebhookAsync(disputeId, "charge.dispute.created");
        await DisputeWebhookAsync(disputeId, "charge.dispute.created"); // the same event type again (another event id)
        await PaymentsHost.EventuallyAsync(() => PaymentsHost.ScalarAsync(
                "SELECT count(*) FROM stripe_events WHERE type = 'charge.dispute.created' AND object_id = @disputeId AND status = 'processed'", new { disputeId }),
            n => n == 2, "both events processed");
        Assert.That(await PaymentsHost.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.PaymentDisputed,%' AND payload->>'disputeId' = @disputeId", new { disputeId }),
            Is.EqualTo(1), "published once");
        Assert.That(await PaymentsHost.ScalarAsync(
            "SELECT count(*) FROM payments WHERE id = @id AND dispute_id = @disputeId AND dispute_status = 'needs_response'", new { id = paymentIntentId, disputeId }),
            Is.EqualTo(1));

        FakeStripe.ObjectAt("/v1/disputes/" + disputeId)["status"] = "lost";
        await DisputeWebhookAsync(disputeId, "charge.dispute.closed");
        await PaymentsHost.EventuallyAsync(() => PaymentsHost.ScalarAsync(
                "SELECT count(*) FROM payments WHERE id = @id AND dispute_status = 'lost'", new { id = paymentIntentId }),
            n => n == 1, "the dispute's end recorded");
        await PaymentsHost.EventuallyAsync(() => PaymentsHost.ScalarAsync(
                """
                SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.PaymentDisputeClosed,%' AND payload->>'disputeId' = @disputeId
                  AND payload->>'status' = 'lost' AND payload->>'paymentId' = @id
                """, new { disputeId, id = paymentIntentId }),
            n => n == 1, "the end published");
        Assert.That(await PaymentsHost.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.PaymentDisputed,%' AND payload->>'disputeId' = @disputeId", new { disputeId }),
            Is.EqualTo(1), "the chargeback itself not again");
    }

    [Test]
    public async Task An_inquiry_publishes_nothing_until_it_becomes_a_chargeback_and_blocks_no_refund_until_then()
    {
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);
        var disputeId = "dp_" + Guid.NewGuid().ToString("N")[..14];
        DisputeOf(disputeId, chargeId, paymentIntentId, "general", "warning_needs_response");
        const string Published = "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.PaymentDisputed,%' AND payload->>'disputeId' = @disputeId";

        await DisputeWebhookAsync(disputeId, "charge.dispute.created");
        await PaymentsHost.EventuallyAsync(() => PaymentsHost.ScalarAsync(
                "SELECT count(*) FROM payments WHERE id = @id AND dispute_status = 'warning_needs_response'", new { id = paymentIntentId }),
            n => n == 1, "the inquiry recorded");
        Assert.That(await PaymentsHost.ScalarAsync(Published, new { disputeId }), Is.Zero, "an inquiry takes no money: nothing to end");
        var refundable = await RefundAsync(paymentIntentId, 1000, null);
        Assert.That(refundable.Status, Is.EqualTo(HttpStatusCode.OK), refundable.Body);

        FakeStripe.ObjectAt("/v1/disputes/" + disputeId)["status"] = "needs_response";
        await DisputeWebhookAsync(disputeId, "charge.dispute.funds_withdrawn");
        await PaymentsHost.EventuallyAsync(() => PaymentsHost.ScalarAsync(Published, new { disputeId }), n => n == 1, "the chargeback published");
        var refused = await RefundAsync(paymentIntentId, 1000, null);
        Assert.That(refused.Status, Is.EqualTo(HttpStatusCode.Conflict), refused.Body);
        Assert.That(JsonDocument.Parse(refused.Body).RootElement.GetProperty("code").GetString(), Is.EqualTo("payment_disputed"));
    }

    [Test]
    public async Task A_chargeback_applied_only_after_it_was_won_takes_nothing_away()
    {
        // Its event waited (the payment was not recorded yet) while the merchant won the dispute: by the time it is applied,
        // Stripe says won, and the money is back.
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);
        var disputeId = "dp_" + Guid.NewGuid().ToString("N")[..14];
        DisputeOf(disputeId, chargeId, paymentIntentId, "fraudulent", "won");

        await DisputeWebhookAsync(disputeId, "charge.dispute.created");
        await PaymentsHost.EventuallyAsync(() => PaymentsHost.ScalarAsync(
                "SELECT count(*) FROM payments WHERE id = @id AND dispute_status = 'won'", new { id = paymentIntentId }),
            n => n == 1, "the dispute recorded as won");
        Assert.That(await PaymentsHost.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.PaymentDisputed,%' AND payload->>'disputeId' = @disputeId", new { disputeId }),
            Is.Zero, "no access or tokens end for a dispute the merchant won");
    }

    [Test]
    public async Task A_refund_event_an_older_release_stored_as_ignored_is_applied_once_this_release_starts()
    {
        // A rollout that teaches Payments a new event type: a replica of the older release stored it as ignored (and Stripe's
        // redelivery was then a duplicate). Simulated with charge.refunded; an ignored type Billing does not handle stays so.
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);
        var charge = FakeStripe.ObjectAt("/v1/charges/" + chargeId);
        charge["amount_refunded"] = 5000L;
        charge["refunded"] = true;
        var (refundEvent, otherEvent) = ("evt_" + Guid.NewGuid().ToString("N")[..14], "evt_" + Guid.NewGuid().ToString("N")[..14]);
        await PaymentsHost.ScalarAsync(
            """
            WITH stored AS (
                INSERT INTO stripe_events (id, type, stripe_created, object_type, object_id, order_key, payload, status, processed_at)
                VALUES (@refundEvent, 'charge.refunded', now(), 'charge', @chargeId, @paymentIntentId, '{}', 'ignored', now()),
                       (@otherEvent, 'customer.created', now(), 'customer', 'cus_x', 'cus_x', '{}', 'ignored', now())
                RETURNING 1)
            SELECT count(*) FROM stored
            """, new { refundEvent, otherEvent, chargeId, paymentIntentId });

        var requeued = await Payments.Services.GetRequiredService<Billing.Payments.Api.Persistence.EventStore>()
            .RequeueNewlyHandledAsync(Billing.Payments.Api.Webhooks.WebhookProcessor.RequeueWindow, CancellationToken.None);

        Assert.That(requeued, Is.GreaterThanOrEqualTo(1));
        await RefundedAmountAsync(paymentIntentId, 5000);
        Assert.That(await PaymentsHost.ScalarAsync("SELECT count(*) FROM stripe_events WHERE id = @otherEvent AND status = 'ignored'", new { otherEvent }),
            Is.EqualTo(1), "a type Billing does not handle stays ignored");
    }

    [Test]
    public async Task An_event_of_a_type_only_a_newer_release_handles_waits_for_it_instead_of_being_done_with()
    {
        var id = "evt_" + Guid.NewGuid().ToString("N")[..14];
        await PaymentsHost.ScalarAsync(
            """
            WITH stored AS (
                INSERT INTO stripe_events (id, type, stripe_created, object_type, object_id, order_key, payload, status)
                VALUES (@id, 'charge.future_thing', now(), 'charge', 'ch_future', 'ch_future', '{}', 'pending')
                RETURNING 1)
            SELECT count(*) FROM stored
            """, new { id });
        await PaymentsHost.ScalarAsync("SELECT count(*) FROM (SELECT pg_notify('billing_stripe_events', '')) n", new { });

        await PaymentsHost.EventuallyAsync(() => PaymentsHost.ScalarAsync("SELECT attempts FROM stripe_events WHERE id = @id", new { id }),
            attempts => attempts >= 1, "an attempt");
        Assert.That(await PaymentsHost.ScalarAsync("SELECT count(*) FROM stripe_events WHERE id = @id AND status = 'pending'", new { id }),
            Is.EqualTo(1), "still waiting for a release that handles it, not processed (lost) nor failed");
    }

    [Test]
    public async Task A_refund_that_fails_takes_the_payment_s_refunded_amount_back_down_and_it_can_be_refunded_again()
    {
        var (paymentIntentId, chargeId) = await PaymentOutsideTheRefundWindowAsync(5000);
        var first = await RefundAsync(paymentIntentId, 5000, null);
        Assert.That(first.Status, Is.EqualTo(HttpStatusCode.OK), first.Body);
        await ChargeRefundedWebhookAsync(chargeId);
        await RefundedAmountAsync(paymentIntentId, 5000);

        // The card was closed: the refund fails. Whether or not Stripe's charge still counts it in amount_refunded (here it
        // does), the money was not returned.
        var refundId = RefundId(first.Body);
        FakeStripe.ObjectAt("/v1/refunds/" + refundId)["status"] = "failed";
        FakeStripe.ObjectAt("/v1/refunds/" + refundId)["failure_reason"] = "expired_or_canceled_card";
        await WebhookAsync("charge.refund.updated", "/v1/refunds/" + refundId);

        await RefundedAmountAsync(paymentIntentId, 0);
        Assert.That(await PaymentsHost.ScalarAsync("SELECT count(*) FROM payments WHERE id = @id AND status = 'paid'", new { id = paymentIntentId }),
            Is.EqualTo(1), "paid again: nothing was refunded");
        const string Published = """
            SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.PaymentRefunded,%' AND payload->>'chargeId' = @chargeId
              AND (payload->>'amountRefunded')::bigint = @amount
            """;
        Assert.That(await PaymentsHost.ScalarAsync(Published, new { chargeId, amount = 0L }), Is.EqualTo(1), "the lower total published");
        Assert.That(await PaymentsHost.ScalarAsync(Published + " AND (payload->>'refundsUndone')::int = 1", new { chargeId, amount = 0L }), Is.EqualTo(1),
            "with the count of undone refunds, which orders it after the refund it undoes");

        // Stripe gives the amount back to the charge; the admin refunds again, and that refund counts (a new message).
        FakeStripe.ObjectAt("/v1/charges/" + chargeId)["amount_refunded"] = 0L;
        FakeStripe.ObjectAt("/v1/charges/" + chargeId)["refunded"] = false;
        var again = await RefundAsync(paymentIntentId, 5000, null);
        Assert.That(again.Status, Is.EqualTo(HttpStatusCode.OK), again.Body);
        await ChargeRefundedWebhookAsync(chargeId);
        await RefundedAmountAsync(paymentIntentId, 5000);
        Assert.That(await PaymentsHost.ScalarAsync(Published, new { chargeId, amount = 5000L }), Is.EqualTo(2), "the second refund published too");
    }

    /// <summary>A dispute of 5,000 on the charge, as Stripe's API shows it (an inquiry, <c>warning_*</c>, can still be refunded).</summary>
    private void DisputeOf(string disputeId, string chargeId, string paymentIntentId, string reason, string status) =>
        FakeStripe.Object("/v1/disputes/" + disputeId, new JsonObject
        {
            ["id"] = disputeId, ["object"] = "dispute", ["amount"] = 5000L, ["charge"] = chargeId, ["payment_intent"] = paymentIntentId,
            ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), ["currency"] = "usd", ["livemode"] = false, ["metadata"] = new JsonObject(),
            ["reason"] = reason, ["status"] = status, ["is_charge_refundable"] = status.StartsWith("warning_", StringComparison.Ordinal),
            ["balance_transactions"] = new JsonArray(),
        });

    private Task DisputeWebhookAsync(string disputeId, string type) => WebhookAsync(type, "/v1/disputes/" + disputeId);

    /// <summary>A paid token pack, 60 days old (outside the default catalog's refund window, so refunds need force).</summary>
    private async Task<(string PaymentIntentId, string ChargeId)> PaymentOutsideTheRefundWindowAsync(long amount)
    {
        var n = Guid.NewGuid().ToString("N")[..14];
        var (paymentIntentId, chargeId) = ("pi_" + n, "ch_" + n);
        FakeStripe.Object("/v1/charges/" + chargeId, new JsonObject
        {
            ["id"] = chargeId, ["object"] = "charge", ["amount"] = amount, ["amount_captured"] = amount, ["amount_refunded"] = 0L,
            ["captured"] = true, ["created"] = DateTimeOffset.UtcNow.AddDays(-60).ToUnixTimeSeconds(), ["currency"] = "usd",
            ["customer"] = "cus_" + n, ["livemode"] = false, ["metadata"] = new JsonObject(), ["paid"] = true,
            ["payment_intent"] = paymentIntentId, ["receipt_url"] = null, ["refunded"] = false, ["status"] = "succeeded",
        });
        await RecordPaymentAsync(paymentIntentId, chargeId, amount);
        return (paymentIntentId, chargeId);
    }

    private static Task<long> RecordPaymentAsync(string paymentIntentId, string chargeId, long amount) => PaymentsHost.ScalarAsync(
        """
        INSERT INTO payments (id, user_id, kind, amount, currency, status, description, payment_intent_id, charge_id, pack_id, tokens, paid_at)
        VALUES (@id, @user, 'token_pack', @amount, 'usd', 'paid', 'Test pack', @id, @charge, 'small', 100, now() - interval '60 days')
        """, new { id = paymentIntentId, user = "u-" + paymentIntentId[3..], amount, charge = chargeId });

    private async Task<(HttpStatusCode Status, string Body)> RefundAsync(string paymentId, long amount, string? idempotencyKey)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/admin/refunds")
        {
            Content = JsonContent.Create(new { paymentId, amount, force = true }),
        };
        if (idempotencyKey is not null)
        {
            request.Headers.TryAddWithoutValidation("Idempotency-Key", idempotencyKey);
        }
        using var response = await Payments.Admin.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Stripe's charge.refunded about the charge as it is now; Payments re-reads the charge.</summary>
    private Task ChargeRefundedWebhookAsync(string chargeId) => WebhookAsync("charge.refunded", "/v1/charges/" + chargeId);

    /// <summary>Sends Stripe's signed event of <paramref name="type"/> about the object Stripe's API has at <paramref name="path"/>.</summary>
    private async Task WebhookAsync(string type, string path)
    {
        var body = FakeStripe.Event("evt_" + Guid.NewGuid().ToString("N")[..14], type, FakeStripe.ObjectAt(path));
        var (status, answer, _) = await Payments.SendWebhookAsync(body);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
    }

    private static Task<long> RefundedAmountAsync(string paymentId, long expected) =>
        PaymentsHost.EventuallyAsync(() => PaymentsHost.ScalarAsync("SELECT amount_refunded FROM payments WHERE id = @id", new { id = paymentId }),
            refunded => refunded == expected, $"the payment's amount_refunded to be {expected}");

    private List<JsonObject> RefundsOf(string chargeId) => FakeStripe.Refunds.Where(r => r["charge"]!.GetValue<string>() == chargeId).ToList();

    private static string RefundId(string body) => JsonDocument.Parse(body).RootElement.GetProperty("refundId").GetString()!;
}
