using System.Net;
using Stripe;
using Stripe.Checkout;

namespace Billing.StripeSimulator.Tests;

public sealed class Paying_a_subscription_at_checkout : SimulatorSpec
{
    [Test]
    public async Task Should_create_the_subscription_its_first_invoice_and_the_charge()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var customer = await CreateCustomer();
        var session = await CreateSubscriptionCheckout(price, customer.Id);
        Assert.That(session.Url, Is.EqualTo($"{SimulatorHost.SimulatorUrl}/checkout/{session.Id}"));
        Assert.That(session.Id, Does.StartWith("cs_test_"));
        Assert.That(session.Mode, Is.EqualTo("subscription"));
        Assert.That(session.Status, Is.EqualTo("open"));

        using var page = await Http.GetAsync($"/checkout/{session.Id}");
        var html = await page.Content.ReadAsStringAsync();
        Assert.That(html, Does.Contain("Pro").And.Contain("$5.00 / month").And.Contain("name=\"card\""));

        using var paid = await Pay(session.Id);
        Assert.That((int)paid.StatusCode, Is.EqualTo(303));
        Assert.That(paid.Headers.Location!.ToString(), Is.EqualTo($"https://app.example/success?session_id={session.Id}"));

        session = await new SessionService(Stripe).GetAsync(session.Id);
        Assert.That(session.Status, Is.EqualTo("complete"));
        Assert.That(session.PaymentStatus, Is.EqualTo("paid"));
        Assert.That(session.CustomerId, Is.EqualTo(customer.Id));
        Assert.That(session.ClientReferenceId, Is.EqualTo("u42"));
        Assert.That(session.Metadata["kind"], Is.EqualTo("subscription"));

        var sub = await new SubscriptionService(Stripe).GetAsync(session.SubscriptionId, new SubscriptionGetOptions { Expand = ["latest_invoice"] });
        Assert.That(sub.Status, Is.EqualTo("active"));
        Assert.That(sub.Metadata["userId"], Is.EqualTo("u42"));
        Assert.That(sub.Metadata["planId"], Is.EqualTo("pro"));
        var item = sub.Items.Data[0];
        Assert.That(item.Price.LookupKey, Is.EqualTo("pro_monthly"));
        Assert.That(item.Price.Recurring.Interval, Is.EqualTo("month"));
        Assert.That(item.Price.Recurring.IntervalCount, Is.EqualTo(1));
        Assert.That(item.CurrentPeriodEnd, Is.EqualTo(item.CurrentPeriodStart.AddMonths(1)));
        Assert.That(sub.CancelAtPeriodEnd, Is.False);

        var invoice = sub.LatestInvoice;
        Assert.That(invoice.Status, Is.EqualTo("paid"));
        Assert.That(invoice.BillingReason, Is.EqualTo("subscription_create"));
        Assert.That(invoice.AmountPaid, Is.EqualTo(500));
        Assert.That(invoice.Parent.Type, Is.EqualTo("subscription_details"));
        Assert.That(invoice.Parent.SubscriptionDetails.SubscriptionId, Is.EqualTo(sub.Id));
        Assert.That(invoice.Parent.SubscriptionDetails.Metadata["userId"], Is.EqualTo("u42"));
        Assert.That(invoice.HostedInvoiceUrl, Does.StartWith(SimulatorHost.SimulatorUrl));
        Assert.That(invoice.StatusTransitions.PaidAt, Is.Not.Null);
        Assert.That(invoice.Lines.Data[0].Period.End, Is.EqualTo(item.CurrentPeriodEnd));

        var payments = await new InvoicePaymentService(Stripe).ListAsync(new InvoicePaymentListOptions { Invoice = invoice.Id });
        Assert.That(payments.Data, Has.Count.EqualTo(1));
        Assert.That(payments.Data[0].Id, Does.StartWith("inpay_"));
        Assert.That(payments.Data[0].Payment.Type, Is.EqualTo("payment_intent"));
        var intent = await new PaymentIntentService(Stripe).GetAsync(payments.Data[0].Payment.PaymentIntentId);
        Assert.That(intent.Status, Is.EqualTo("succeeded"));
        var charge = await new ChargeService(Stripe).GetAsync(intent.LatestChargeId);
        Assert.That(charge.Amount, Is.EqualTo(500));
        Assert.That(charge.ReceiptUrl, Is.Not.Empty);
        Assert.That(charge.PaymentIntentId, Is.EqualTo(intent.Id));

        var expanded = await new InvoiceService(Stripe).GetAsync(invoice.Id, new InvoiceGetOptions { Expand = ["payments"] });
        Assert.That(expanded.Payments.Data[0].Payment.PaymentIntentId, Is.EqualTo(intent.Id));

        var types = (await EventTypes()).Where(t => !t.StartsWith("customer.created") && !t.StartsWith("price.") && !t.StartsWith("product.")).ToList();
        Assert.That(types, Is.EqualTo(new[]
        {
            "customer.subscription.created", "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded",
            "payment_intent.succeeded", "charge.succeeded", "checkout.session.completed",
        }));
    }

    [Test]
    public async Task Should_create_a_customer_when_the_session_has_none()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var session = await CreateSubscriptionCheckout(price);
        using var _ = await Pay(session.Id);
        session = await new SessionService(Stripe).GetAsync(session.Id);
        Assert.That(session.CustomerId, Does.StartWith("cus_"));
    }

    [TestCase("4000000000000002", "Your card was declined.")]
    [TestCase("4000000000009995", "Your card has insufficient funds.")]
    [TestCase("4242424242424241", "Your card number is incorrect.")]
    public async Task Should_show_the_decline_and_create_nothing(string card, string message)
    {
        var price = await CreatePrice("pro_monthly", 500);
        var session = await CreateSubscriptionCheckout(price, (await CreateCustomer()).Id);
        using var response = await Pay(session.Id, card);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain(message));
        session = await new SessionService(Stripe).GetAsync(session.Id);
        Assert.That(session.Status, Is.EqualTo("open"));
        Assert.That(session.SubscriptionId, Is.Null);
        var subs = await new SubscriptionService(Stripe).ListAsync(new SubscriptionListOptions { Status = "all" });
        Assert.That(subs.Data, Is.Empty);
    }

    [Test]
    public async Task Should_refuse_to_be_paid_twice()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var session = await CreateSubscriptionCheckout(price);
        using var first = await Pay(session.Id);
        using var second = await Pay(session.Id);
        Assert.That((int)second.StatusCode, Is.EqualTo(409));
        var subs = await new SubscriptionService(Stripe).ListAsync(new SubscriptionListOptions { Status = "all" });
        Assert.That(subs.Data, Has.Count.EqualTo(1));
    }

    [Test]
    public async Task Should_redirect_to_the_cancel_url_on_cancel()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var session = await CreateSubscriptionCheckout(price);
        using var response = await Http.PostAsync($"/checkout/{session.Id}/cancel", null);
        Assert.That((int)response.StatusCode, Is.EqualTo(303));
        Assert.That(response.Headers.Location!.ToString(), Is.EqualTo("https://app.example/cancel"));
    }

    [Test]
    public async Task Should_start_a_trial_with_a_zero_invoice_and_no_charge()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await SubscribeAndPay(price, trialDays: 14);
        Assert.That(sub.Status, Is.EqualTo("trialing"));
        Assert.That(sub.TrialEnd, Is.EqualTo(sub.TrialStart!.Value.AddDays(14)));
        Assert.That(sub.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(sub.TrialEnd));
        var invoice = await new InvoiceService(Stripe).GetAsync(sub.LatestInvoiceId);
        Assert.That(invoice.AmountDue, Is.Zero);
        Assert.That(invoice.Status, Is.EqualTo("paid"));
        var charges = await new ChargeService(Stripe).ListAsync();
        Assert.That(charges.Data, Is.Empty);
        var sessions = await new SessionService(Stripe).ListAsync(new SessionListOptions { Subscription = sub.Id });
        Assert.That(sessions.Data[0].PaymentStatus, Is.EqualTo("no_payment_required"));
    }

    [Test]
    public async Task Should_ask_for_3d_secure_and_then_succeed_or_decline()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var session = await CreateSubscriptionCheckout(price);
        using var challenge = await Pay(session.Id, "4000002760003184");
        Assert.That(await challenge.Content.ReadAsStringAsync(), Does.Contain("3D Secure"));
        using var failed = await Http.PostAsync($"/checkout/{session.Id}/3ds", new FormUrlEncodedContent(new Dictionary<string, string> { ["outcome"] = "fail" }));
        Assert.That(await failed.Content.ReadAsStringAsync(), Does.Contain("unable to authenticate"));
        using var again = await Pay(session.Id, "4000002760003184");
        using var completed = await Http.PostAsync($"/checkout/{session.Id}/3ds", new FormUrlEncodedContent(new Dictionary<string, string> { ["outcome"] = "complete" }));
        Assert.That((int)completed.StatusCode, Is.EqualTo(303));
        session = await new SessionService(Stripe).GetAsync(session.Id);
        Assert.That(session.PaymentStatus, Is.EqualTo("paid"));
    }
}

public sealed class Paying_a_one_time_checkout : SimulatorSpec
{
    private static async Task<Session> CreatePackCheckout()
    {
        var price = await CreatePrice("pack_starter", 500, interval: null, productName: "Starter pack");
        return await new SessionService(Stripe).CreateAsync(new SessionCreateOptions
        {
            Mode = "payment",
            ClientReferenceId = "u42",
            LineItems = [new() { Price = price.Id, Quantity = 1 }],
            SuccessUrl = "https://app.example/ok",
            CancelUrl = "https://app.example/cancel",
            Metadata = new() { ["userId"] = "u42", ["kind"] = "token_pack", ["packId"] = "starter" },
            PaymentIntentData = new SessionPaymentIntentDataOptions { Metadata = new() { ["userId"] = "u42", ["packId"] = "starter" } },
        });
    }

    [Test]
    public async Task Should_charge_once_and_complete_as_paid()
    {
        var session = await CreatePackCheckout();
        using var response = await Pay(session.Id);
        Assert.That((int)response.StatusCode, Is.EqualTo(303));
        session = await new SessionService(Stripe).GetAsync(session.Id, new SessionGetOptions { Expand = ["payment_intent", "line_items"] });
        Assert.That(session.PaymentStatus, Is.EqualTo("paid"));
        Assert.That(session.PaymentIntent.Metadata["packId"], Is.EqualTo("starter"));
        Assert.That(session.PaymentIntent.Status, Is.EqualTo("succeeded"));
        Assert.That(session.LineItems.Data[0].Price.LookupKey, Is.EqualTo("pack_starter"));
        var types = await EventTypes();
        Assert.That(types.Where(t => t.StartsWith("payment_intent.") || t.StartsWith("charge.") || t.StartsWith("checkout.")),
            Is.EqualTo(new[] { "payment_intent.succeeded", "charge.succeeded", "checkout.session.completed" }));
    }

    [Test]
    public async Task Should_settle_a_bank_debit_later()
    {
        var session = await CreatePackCheckout();
        using var response = await Pay(session.Id, method: "bank_debit");
        Assert.That((int)response.StatusCode, Is.EqualTo(303));
        session = await new SessionService(Stripe).GetAsync(session.Id);
        Assert.That(session.Status, Is.EqualTo("complete"));
        Assert.That(session.PaymentStatus, Is.EqualTo("unpaid"));
        await PostJson($"/_sim/checkout/{session.Id}/settle", new() { ["succeed"] = true });
        session = await new SessionService(Stripe).GetAsync(session.Id);
        Assert.That(session.PaymentStatus, Is.EqualTo("paid"));
        Assert.That(await EventTypes(), Does.Contain("checkout.session.async_payment_succeeded"));
    }

    [Test]
    public async Task Should_report_a_failed_bank_debit()
    {
        var session = await CreatePackCheckout();
        using var _ = await Pay(session.Id, method: "bank_debit");
        await PostJson($"/_sim/checkout/{session.Id}/settle", new() { ["succeed"] = false });
        Assert.That(await EventTypes(), Does.Contain("checkout.session.async_payment_failed"));
    }

    [Test]
    public async Task Should_expire_an_open_session()
    {
        var session = await CreatePackCheckout();
        session = await new SessionService(Stripe).ExpireAsync(session.Id);
        Assert.That(session.Status, Is.EqualTo("expired"));
        using var response = await Pay(session.Id);
        Assert.That((int)response.StatusCode, Is.EqualTo(409));
        var items = await new SessionLineItemService(Stripe).ListAsync(session.Id);
        Assert.That(items.Data[0].AmountTotal, Is.EqualTo(500));
    }
}
