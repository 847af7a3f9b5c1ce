using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Stripe;
using Stripe.Checkout;

namespace Billing.StripeSimulator.Tests;

public sealed class Disputing_a_charge : SimulatorSpec
{
    [Test]
    public async Task Should_open_a_dispute_and_deliver_a_signed_charge_dispute_created_that_Stripe_net_reads()
    {
        var charge = await PaidCharge();
        var (status, dispute) = await SimPost($"/_sim/charges/{charge.Id}/dispute", Json(new JsonObject()));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), dispute.ToJsonString());

        var id = dispute["id"]!.GetValue<string>();
        Assert.That(id, Does.StartWith("dp_"));
        Assert.That(dispute["object"]!.GetValue<string>(), Is.EqualTo("dispute"));
        Assert.That(dispute["amount"]!.GetValue<long>(), Is.EqualTo(500), "the charge's amount by default");
        Assert.That(dispute["balance_transactions"]!.AsArray(), Is.Empty);
        Assert.That(dispute["charge"]!.GetValue<string>(), Is.EqualTo(charge.Id));
        Assert.That(dispute["currency"]!.GetValue<string>(), Is.EqualTo("usd"));
        Assert.That(dispute["evidence"]!.AsObject(), Is.Empty);
        var created = dispute["created"]!.GetValue<long>();
        Assert.That(created, Is.EqualTo(await Now()).Within(5));
        Assert.That(dispute["evidence_details"]!["due_by"]!.GetValue<long>(), Is.GreaterThan(created));
        Assert.That(dispute["evidence_details"]!["has_evidence"]!.GetValue<bool>(), Is.False);
        Assert.That(dispute["evidence_details"]!["past_due"]!.GetValue<bool>(), Is.False);
        Assert.That(dispute["evidence_details"]!["submission_count"]!.GetValue<long>(), Is.Zero);
        Assert.That(dispute["is_charge_refundable"]!.GetValue<bool>(), Is.False);
        Assert.That(dispute["livemode"]!.GetValue<bool>(), Is.False);
        Assert.That(dispute["metadata"]!.AsObject(), Is.Empty);
        Assert.That(dispute["payment_intent"]!.GetValue<string>(), Is.EqualTo(charge.PaymentIntentId));
        Assert.That(dispute["reason"]!.GetValue<string>(), Is.EqualTo("fraudulent"), "the default reason");
        Assert.That(dispute["status"]!.GetValue<string>(), Is.EqualTo("needs_response"));

        var received = await WaitForWebhooks(w => w.Any(x => x.Type == "charge.dispute.created"));
        var webhook = received.Single(x => x.Type == "charge.dispute.created");
        var evt = EventUtility.ConstructEvent(webhook.Body, webhook.Signature, SimulatorHost.Secret);
        Assert.That(evt.Data.Object, Is.TypeOf<Dispute>());
        var delivered = (Dispute)evt.Data.Object;
        Assert.That(delivered.Id, Is.EqualTo(id));
        Assert.That(delivered.Amount, Is.EqualTo(500));
        Assert.That(delivered.ChargeId, Is.EqualTo(charge.Id));
        Assert.That(delivered.PaymentIntentId, Is.EqualTo(charge.PaymentIntentId));
        Assert.That(delivered.Reason, Is.EqualTo("fraudulent"));
        Assert.That(delivered.Status, Is.EqualTo("needs_response"));
        Assert.That(delivered.EvidenceDetails.DueBy, Is.GreaterThan(delivered.Created));

        Assert.That((await new ChargeService(Stripe).GetAsync(charge.Id)).Disputed, Is.True);
        Assert.That((await EventTypes()).Where(t => t.StartsWith("charge.dispute.")), Is.EqualTo(new[] { "charge.dispute.created" }));
    }

    [Test]
    public async Task Should_take_the_reason_and_amount_from_a_form_and_default_the_amount_to_what_was_not_refunded()
    {
        var first = await PaidCharge();
        var (status, partial) = await SimPost($"/_sim/charges/{first.Id}/dispute", Form("reason=product_not_received&amount=200"));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), partial.ToJsonString());
        Assert.That(partial["reason"]!.GetValue<string>(), Is.EqualTo("product_not_received"));
        Assert.That(partial["amount"]!.GetValue<long>(), Is.EqualTo(200));

        var second = await PaidCharge();
        await new RefundService(Stripe).CreateAsync(new RefundCreateOptions { Charge = second.Id, Amount = 150 });
        var (_, rest) = await SimPost($"/_sim/charges/{second.Id}/dispute", Json(new JsonObject { ["reason"] = "duplicate" }));
        Assert.That(rest["amount"]!.GetValue<long>(), Is.EqualTo(350));
        Assert.That(rest["reason"]!.GetValue<string>(), Is.EqualTo("duplicate"));
    }

    [Test]
    public async Task Should_retrieve_and_list_disputes_through_Stripe_net()
    {
        var first = await PaidCharge();
        var second = await PaidCharge();
        var older = (await SimPost($"/_sim/charges/{first.Id}/dispute", Json(new JsonObject()))).Body["id"]!.GetValue<string>();
        var newer = (await SimPost($"/_sim/charges/{second.Id}/dispute", Json(new JsonObject { ["reason"] = "unrecognized", ["amount"] = 100 }))).Body["id"]!.GetValue<string>();

        var disputes = new DisputeService(Stripe);
        var one = await disputes.GetAsync(newer);
        Assert.That(one.Id, Is.EqualTo(newer));
        Assert.That(one.Amount, Is.EqualTo(100));
        Assert.That(one.ChargeId, Is.EqualTo(second.Id));
        Assert.That(one.PaymentIntentId, Is.EqualTo(second.PaymentIntentId));
        Assert.That(one.Reason, Is.EqualTo("unrecognized"));
        Assert.That(one.Status, Is.EqualTo("needs_response"));
        Assert.That(one.IsChargeRefundable, Is.False);

        var expanded = await disputes.GetAsync(newer, new DisputeGetOptions { Expand = ["charge"] });
        Assert.That(expanded.Charge.Disputed, Is.True);

        var byCharge = await disputes.ListAsync(new DisputeListOptions { Charge = first.Id });
        Assert.That(byCharge.Data.Select(d => d.Id), Is.EqualTo(new[] { older }));
        var byIntent = await disputes.ListAsync(new DisputeListOptions { PaymentIntent = second.PaymentIntentId });
        Assert.That(byIntent.Data.Select(d => d.Id), Is.EqualTo(new[] { newer }));
        var page = await disputes.ListAsync(new DisputeListOptions { Limit = 1 });
        Assert.That(page.Data.Select(d => d.Id), Is.EqualTo(new[] { newer }), "newest first");
        Assert.That(page.HasMore, Is.True);
        var next = await disputes.ListAsync(new DisputeListOptions { Limit = 1, StartingAfter = newer });
        Assert.That(next.Data.Select(d => d.Id), Is.EqualTo(new[] { older }));
        Assert.That(next.HasMore, Is.False);
    }

    [Test]
    public async Task Should_close_a_dispute_as_lost_and_emit_charge_dispute_closed()
    {
        var charge = await PaidCharge();
        var id = (await SimPost($"/_sim/charges/{charge.Id}/dispute", Json(new JsonObject()))).Body["id"]!.GetValue<string>();
        var (status, closed) = await SimPost($"/_sim/disputes/{id}/close", Json(new JsonObject { ["status"] = "lost" }));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), closed.ToJsonString());
        Assert.That(closed["id"]!.GetValue<string>(), Is.EqualTo(id));
        Assert.That(closed["status"]!.GetValue<string>(), Is.EqualTo("lost"));

        var received = await WaitForWebhooks(w => w.Any(x => x.Type == "charge.dispute.closed"));
        var webhook = received.Single(x => x.Type == "charge.dispute.closed");
        var evt = EventUtility.ConstructEvent(webhook.Body, webhook.Signature, SimulatorHost.Secret);
        var dispute = (Dispute)evt.Data.Object;
        Assert.That(dispute.Id, Is.EqualTo(id));
        Assert.That(dispute.Status, Is.EqualTo("lost"));
        Assert.That((await new DisputeService(Stripe).GetAsync(id)).Status, Is.EqualTo("lost"));
        Assert.That((await new ChargeService(Stripe).GetAsync(charge.Id)).Disputed, Is.True, "a charge that was disputed stays so");
        Assert.That((await EventTypes()).Where(t => t.StartsWith("charge.dispute.")), Is.EqualTo(new[] { "charge.dispute.created", "charge.dispute.closed" }));

        var (again, error) = await SimPost($"/_sim/disputes/{id}/close", Form("status=won"));
        Assert.That(again, Is.EqualTo(HttpStatusCode.BadRequest), "a closed dispute stays closed");
        Assert.That(error["error"]!["param"]!.GetValue<string>(), Is.EqualTo("status"));
    }

    [Test]
    public async Task Should_close_a_dispute_as_won_from_a_form()
    {
        var charge = await PaidCharge();
        var id = (await SimPost($"/_sim/charges/{charge.Id}/dispute", Form(""))).Body["id"]!.GetValue<string>();
        var (status, closed) = await SimPost($"/_sim/disputes/{id}/close", Form("status=won"));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), closed.ToJsonString());
        Assert.That(closed["status"]!.GetValue<string>(), Is.EqualTo("won"));
        await WaitForWebhooks(w => w.Any(x => x.Type == "charge.dispute.closed"));
    }

    [Test]
    public async Task Should_answer_Stripe_errors_for_unknown_ids_a_second_dispute_and_a_status_other_than_won_or_lost()
    {
        var (missing, notFound) = await SimPost("/_sim/charges/ch_missing/dispute", Json(new JsonObject()));
        Assert.That(missing, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(notFound["error"]!["type"]!.GetValue<string>(), Is.EqualTo("invalid_request_error"));
        Assert.That(notFound["error"]!["code"]!.GetValue<string>(), Is.EqualTo("resource_missing"));
        Assert.That(notFound["error"]!["message"]!.GetValue<string>(), Is.EqualTo("No such charge: 'ch_missing'"));

        var charge = await PaidCharge();
        var id = (await SimPost($"/_sim/charges/{charge.Id}/dispute", Json(new JsonObject()))).Body["id"]!.GetValue<string>();
        var (twice, already) = await SimPost($"/_sim/charges/{charge.Id}/dispute", Json(new JsonObject()));
        Assert.That(twice, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(already["error"]!["type"]!.GetValue<string>(), Is.EqualTo("invalid_request_error"));
        Assert.That(already["error"]!["message"]!.GetValue<string>(), Does.Contain("already been disputed"));

        var other = await PaidCharge();
        var (badReason, _) = await SimPost($"/_sim/charges/{other.Id}/dispute", Json(new JsonObject { ["reason"] = "because" }));
        Assert.That(badReason, Is.EqualTo(HttpStatusCode.BadRequest));
        var (tooMuch, _) = await SimPost($"/_sim/charges/{other.Id}/dispute", Json(new JsonObject { ["amount"] = 501 }));
        Assert.That(tooMuch, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await new ChargeService(Stripe).GetAsync(other.Id)).Disputed, Is.False, "nothing changed by a refused dispute");

        foreach (var body in new[] { Json(new JsonObject { ["status"] = "pending" }), Json(new JsonObject()), Form("status=needs_response") })
        {
            var (badStatus, error) = await SimPost($"/_sim/disputes/{id}/close", body);
            Assert.That(badStatus, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(error["error"]!["param"]!.GetValue<string>(), Is.EqualTo("status"));
        }
        Assert.That((await new DisputeService(Stripe).GetAsync(id)).Status, Is.EqualTo("needs_response"));

        var (unknownDispute, _) = await SimPost("/_sim/disputes/dp_missing/close", Json(new JsonObject { ["status"] = "won" }));
        Assert.That(unknownDispute, Is.EqualTo(HttpStatusCode.NotFound));
        var ex = Assert.ThrowsAsync<StripeException>(() => new DisputeService(Stripe).GetAsync("dp_missing"));
        Assert.That(ex!.HttpStatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(ex.StripeError.Code, Is.EqualTo("resource_missing"));
        Assert.That(ex.StripeError.Message, Is.EqualTo("No such dispute: 'dp_missing'"));
        Assert.That((await EventTypes()).Where(t => t.StartsWith("charge.dispute.")), Is.EqualTo(new[] { "charge.dispute.created" }));
    }

    [Test]
    public async Task Should_refuse_to_refund_a_disputed_charge()
    {
        var charge = await PaidCharge();
        await SimPost($"/_sim/charges/{charge.Id}/dispute", Json(new JsonObject()));
        var ex = Assert.ThrowsAsync<StripeException>(() => new RefundService(Stripe).CreateAsync(new RefundCreateOptions { Charge = charge.Id }));
        Assert.That(ex!.HttpStatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(ex.StripeError.Code, Is.EqualTo("charge_disputed"));
        Assert.That((await new ChargeService(Stripe).GetAsync(charge.Id)).AmountRefunded, Is.Zero);
    }

    [Test]
    public async Task Should_forget_disputes_on_reset()
    {
        var charge = await PaidCharge();
        var id = (await SimPost($"/_sim/charges/{charge.Id}/dispute", Json(new JsonObject()))).Body["id"]!.GetValue<string>();
        await PostJson("/_sim/reset", new JsonObject());
        Assert.That((await new DisputeService(Stripe).ListAsync()).Data, Is.Empty);
        Assert.ThrowsAsync<StripeException>(() => new DisputeService(Stripe).GetAsync(id));
    }

    [Test]
    public async Task Should_fail_a_refund_on_request_giving_its_amount_back_to_the_charge_with_charge_refund_updated()
    {
        var charge = await PaidCharge();
        var refund = await new RefundService(Stripe).CreateAsync(new RefundCreateOptions { Charge = charge.Id });
        Assert.That((await new ChargeService(Stripe).GetAsync(charge.Id)).AmountRefunded, Is.EqualTo(500));

        var (status, failed) = await SimPost($"/_sim/refunds/{refund.Id}/fail", Json(new JsonObject()));

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), failed.ToJsonString());
        Assert.That((failed["status"]!.GetValue<string>(), failed["failure_reason"]!.GetValue<string>()), Is.EqualTo(("failed", "expired_or_canceled_card")));
        var after = await new ChargeService(Stripe).GetAsync(charge.Id);
        Assert.That((after.AmountRefunded, after.Refunded), Is.EqualTo((0L, false)));
        var listed = await new RefundService(Stripe).ListAsync(new RefundListOptions { Charge = charge.Id });
        Assert.That(listed.Data.Single().Status, Is.EqualTo("failed"));
        var received = await WaitForWebhooks(w => w.Any(x => x.Type == "charge.refund.updated"));
        var evt = EventUtility.ConstructEvent(received.First(x => x.Type == "charge.refund.updated").Body,
            received.First(x => x.Type == "charge.refund.updated").Signature, SimulatorHost.Secret);
        Assert.That(((Refund)evt.Data.Object).Status, Is.EqualTo("failed"));
        Assert.That(await EventTypes(), Does.Contain("refund.failed"));

        var again = await new RefundService(Stripe).CreateAsync(new RefundCreateOptions { Charge = charge.Id });
        Assert.That(again.Amount, Is.EqualTo(500), "the amount can be refunded again");
        var (twice, _) = await SimPost($"/_sim/refunds/{refund.Id}/fail", Json(new JsonObject()));
        Assert.That(twice, Is.EqualTo(HttpStatusCode.BadRequest), "a failed refund does not fail twice");
    }

    /// <summary>A $5 token pack paid at checkout: its succeeded charge.</summary>
    private static async Task<Charge> PaidCharge()
    {
        var price = await CreatePrice("pack_starter", 500, interval: null, productName: "Starter pack");
        var session = await new SessionService(Stripe).CreateAsync(new SessionCreateOptions
        {
            Mode = "payment",
            ClientReferenceId = "u42",
            LineItems = [new() { Price = price.Id, Quantity = 1 }],
            SuccessUrl = "https://app.example/ok",
            CancelUrl = "https://app.example/cancel",
            PaymentIntentData = new SessionPaymentIntentDataOptions { Metadata = new() { ["userId"] = "u42", ["packId"] = "starter" } },
        });
        using (var paid = await Pay(session.Id))
        {
            Assert.That((int)paid.StatusCode, Is.EqualTo(303));
        }
        session = await new SessionService(Stripe).GetAsync(session.Id, new SessionGetOptions { Expand = ["payment_intent"] });
        var charge = await new ChargeService(Stripe).GetAsync(session.PaymentIntent.LatestChargeId);
        Assert.That(charge.Paid, Is.True);
        Assert.That(charge.Disputed, Is.False);
        return charge;
    }

    private static HttpContent Json(JsonObject body) => new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");

    private static HttpContent Form(string form) => new StringContent(form, Encoding.UTF8, "application/x-www-form-urlencoded");

    /// <summary>A POST to a <c>/_sim</c> control endpoint that returns the status instead of asserting success.</summary>
    private static async Task<(HttpStatusCode Status, JsonObject Body)> SimPost(string path, HttpContent content)
    {
        using (content)
        {
            using var response = await Http.PostAsync(path, content);
            return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
        }
    }
}
