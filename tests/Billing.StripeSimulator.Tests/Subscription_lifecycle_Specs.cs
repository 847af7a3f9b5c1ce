using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Stripe;

namespace Billing.StripeSimulator.Tests;

public sealed class Moving_simulated_time : SimulatorSpec
{
    private static async Task<List<JsonObject>> Events(string? typePrefix = null)
    {
        var list = await GetJson("/_sim/events");
        return list["data"]!.AsArray().Select(e => e!["event"]!.AsObject())
            .Where(e => typePrefix is null || e["type"]!.GetValue<string>().StartsWith(typePrefix, StringComparison.Ordinal))
            .Reverse().ToList();
    }

    [Test]
    public async Task Should_renew_a_monthly_subscription_at_period_end()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await SubscribeAndPay(price);
        var firstEnd = sub.Items.Data[0].CurrentPeriodEnd;
        var before = (await Events()).Count;

        await AdvanceTo(new DateTimeOffset(firstEnd).ToUnixTimeSeconds() + 60);

        var renewed = await new SubscriptionService(Stripe).GetAsync(sub.Id);
        Assert.That(renewed.Status, Is.EqualTo("active"));
        Assert.That(renewed.Items.Data[0].CurrentPeriodStart, Is.EqualTo(firstEnd));
        Assert.That(renewed.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(firstEnd.AddMonths(1)));
        var types = (await Events()).Skip(before).Select(e => e["type"]!.GetValue<string>()).ToList();
        Assert.That(types, Is.EqualTo(new[]
        {
            "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded",
            "payment_intent.succeeded", "charge.succeeded", "customer.subscription.updated",
        }));
        var updated = (await Events("customer.subscription.updated")).Last();
        Assert.That(updated["data"]!["previous_attributes"]!["items"], Is.Not.Null);
        Assert.That(updated["created"]!.GetValue<long>(), Is.EqualTo(new DateTimeOffset(firstEnd).ToUnixTimeSeconds()));

        var invoice = await new InvoiceService(Stripe).GetAsync(renewed.LatestInvoiceId);
        Assert.That(invoice.BillingReason, Is.EqualTo("subscription_cycle"));
        Assert.That(invoice.Status, Is.EqualTo("paid"));
        Assert.That(invoice.Lines.Data[0].Period.End, Is.EqualTo(firstEnd.AddMonths(1)));
    }

    [Test]
    public void Should_count_months_from_the_anchor_day()
    {
        var jan31 = new DateTimeOffset(2027, 1, 31, 10, 0, 0, TimeSpan.Zero).ToUnixTimeSeconds();
        var feb = Engine.Calendar.NextBoundary(jan31, "month", 1, jan31);
        var mar = Engine.Calendar.NextBoundary(jan31, "month", 1, feb);
        Assert.That(DateTimeOffset.FromUnixTimeSeconds(feb).Date, Is.EqualTo(new DateTime(2027, 2, 28)));
        Assert.That(DateTimeOffset.FromUnixTimeSeconds(mar).Date, Is.EqualTo(new DateTime(2027, 3, 31)));
        var quarter = Engine.Calendar.NextBoundary(jan31, "month", 3, jan31);
        Assert.That(DateTimeOffset.FromUnixTimeSeconds(quarter).Date, Is.EqualTo(new DateTime(2027, 4, 30)));
        var year = Engine.Calendar.NextBoundary(jan31, "year", 1, jan31);
        Assert.That(DateTimeOffset.FromUnixTimeSeconds(year).Date, Is.EqualTo(new DateTime(2028, 1, 31)));
    }

    [Test]
    public async Task Should_bill_quarterly_prices_every_three_months()
    {
        var price = await CreatePrice("pro_quarterly", 1200, "month", 3);
        var sub = await SubscribeAndPay(price);
        var item = sub.Items.Data[0];
        Assert.That(item.CurrentPeriodEnd, Is.EqualTo(item.CurrentPeriodStart.AddMonths(3)));
        Assert.That(item.Price.Recurring.IntervalCount, Is.EqualTo(3));
    }

    [Test]
    public async Task Should_retry_a_failing_card_and_cancel_after_the_last_attempt()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await SubscribeAndPay(price, "4000000000000341");
        Assert.That(sub.Status, Is.EqualTo("active"));
        var periodEnd = new DateTimeOffset(sub.Items.Data[0].CurrentPeriodEnd).ToUnixTimeSeconds();

        await AdvanceTo(periodEnd + 1);
        var pastDue = await new SubscriptionService(Stripe).GetAsync(sub.Id);
        Assert.That(pastDue.Status, Is.EqualTo("past_due"));
        var invoice = await new InvoiceService(Stripe).GetAsync(pastDue.LatestInvoiceId);
        Assert.That(invoice.Status, Is.EqualTo("open"));
        Assert.That(invoice.AttemptCount, Is.EqualTo(1));
        Assert.That(invoice.NextPaymentAttempt, Is.EqualTo(DateTimeOffset.FromUnixTimeSeconds(periodEnd + 3 * 86400).UtcDateTime));

        await AdvanceTo(periodEnd + 3 * 86400 + 1);
        await AdvanceTo(periodEnd + 8 * 86400 + 1);
        invoice = await new InvoiceService(Stripe).GetAsync(invoice.Id);
        Assert.That(invoice.AttemptCount, Is.EqualTo(3));
        Assert.That(invoice.NextPaymentAttempt, Is.EqualTo(DateTimeOffset.FromUnixTimeSeconds(periodEnd + 15 * 86400).UtcDateTime));

        await AdvanceTo(periodEnd + 15 * 86400 + 1);
        var canceled = await new SubscriptionService(Stripe).GetAsync(sub.Id);
        Assert.That(canceled.Status, Is.EqualTo("canceled"));
        Assert.That(canceled.EndedAt, Is.Not.Null);
        var failures = await Events("invoice.payment_failed");
        Assert.That(failures.Select(e => e["data"]!["object"]!["attempt_count"]!.GetValue<long>()), Is.EqualTo(new long[] { 1, 2, 3, 4 }));
        Assert.That(await EventTypes(), Does.Contain("customer.subscription.deleted"));
        var active = await new SubscriptionService(Stripe).ListAsync(new SubscriptionListOptions { Customer = sub.CustomerId });
        Assert.That(active.Data, Is.Empty, "canceled subscriptions are left out unless status=all");
    }

    [Test]
    public async Task Should_recover_when_the_customer_fixes_the_card()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await SubscribeAndPay(price, "4000000000000341");
        var periodEnd = new DateTimeOffset(sub.Items.Data[0].CurrentPeriodEnd).ToUnixTimeSeconds();
        await AdvanceTo(periodEnd + 1);
        await PostJson($"/_sim/customers/{sub.CustomerId}/card", new() { ["card"] = "4242424242424242" });
        await AdvanceTo(periodEnd + 3 * 86400 + 1);
        var recovered = await new SubscriptionService(Stripe).GetAsync(sub.Id);
        Assert.That(recovered.Status, Is.EqualTo("active"));
        var invoice = await new InvoiceService(Stripe).GetAsync(recovered.LatestInvoiceId);
        Assert.That(invoice.Status, Is.EqualTo("paid"));
        Assert.That(invoice.AttemptCount, Is.EqualTo(2));
    }

    [Test]
    public async Task Should_end_a_subscription_canceled_at_period_end()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await SubscribeAndPay(price);
        var service = new SubscriptionService(Stripe);
        sub = await service.UpdateAsync(sub.Id, new SubscriptionUpdateOptions { CancelAtPeriodEnd = true });
        Assert.That(sub.CancelAtPeriodEnd, Is.True);
        Assert.That(sub.CancelAt, Is.EqualTo(sub.Items.Data[0].CurrentPeriodEnd));
        var updated = (await Events("customer.subscription.updated")).Last();
        Assert.That(updated["data"]!["previous_attributes"]!["cancel_at_period_end"]!.GetValue<bool>(), Is.False);

        sub = await service.UpdateAsync(sub.Id, new SubscriptionUpdateOptions { CancelAtPeriodEnd = false });
        Assert.That(sub.CancelAt, Is.Null);
        sub = await service.UpdateAsync(sub.Id, new SubscriptionUpdateOptions { CancelAtPeriodEnd = true });

        await AdvanceTo(new DateTimeOffset(sub.Items.Data[0].CurrentPeriodEnd).ToUnixTimeSeconds() + 1);
        sub = await service.GetAsync(sub.Id);
        Assert.That(sub.Status, Is.EqualTo("canceled"));
        Assert.That(await EventTypes(), Does.Contain("customer.subscription.deleted"));
        Assert.That((await new InvoiceService(Stripe).ListAsync(new InvoiceListOptions { Subscription = sub.Id })).Data, Has.Count.EqualTo(1));
    }

    [Test]
    public async Task Should_warn_before_a_trial_ends_and_then_charge()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await SubscribeAndPay(price, trialDays: 7);
        var trialEnd = new DateTimeOffset(sub.TrialEnd!.Value).ToUnixTimeSeconds();
        await AdvanceTo(trialEnd - 3 * 86400 + 1);
        Assert.That(await EventTypes(), Does.Contain("customer.subscription.trial_will_end"));
        await AdvanceTo(trialEnd + 1);
        sub = await new SubscriptionService(Stripe).GetAsync(sub.Id);
        Assert.That(sub.Status, Is.EqualTo("active"));
        var invoice = await new InvoiceService(Stripe).GetAsync(sub.LatestInvoiceId);
        Assert.That(invoice.AmountPaid, Is.EqualTo(500));
        Assert.That(sub.Items.Data[0].CurrentPeriodStart, Is.EqualTo(sub.TrialEnd));
    }

    [Test]
    public async Task Should_end_a_trial_on_an_update_with_trial_end_now_and_bill_the_new_price_in_full_for_a_period_from_now()
    {
        var pro = await CreatePrice("pro_monthly", 500);
        var max = await CreatePrice("max_monthly", 5000, productName: "Max");
        var sub = await SubscribeAndPay(pro, trialDays: 14);
        var service = new SubscriptionService(Stripe);

        // A declined card with error_if_incomplete: nothing changes.
        using (var declined = await Http.PostAsJsonAsync($"/_sim/customers/{sub.CustomerId}/card", new { card = "4000000000000002" }))
        {
            Assert.That(declined.IsSuccessStatusCode, Is.True);
        }
        var refused = Assert.ThrowsAsync<StripeException>(() => service.UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new() { Id = sub.Items.Data[0].Id, Price = max.Id }], TrialEnd = SubscriptionTrialEnd.Now,
            ProrationBehavior = "always_invoice", PaymentBehavior = "error_if_incomplete",
        }));
        Assert.That(refused!.StripeError.Type, Is.EqualTo("card_error"));
        var unchanged = await service.GetAsync(sub.Id);
        Assert.That((unchanged.Status, unchanged.Items.Data[0].Price.Id), Is.EqualTo(("trialing", pro.Id)));

        using (var fixedCard = await Http.PostAsJsonAsync($"/_sim/customers/{sub.CustomerId}/card", new { card = "4242424242424242" }))
        {
            Assert.That(fixedCard.IsSuccessStatusCode, Is.True);
        }
        var now = await service.UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new() { Id = sub.Items.Data[0].Id, Price = max.Id }], TrialEnd = SubscriptionTrialEnd.Now,
            ProrationBehavior = "always_invoice", PaymentBehavior = "error_if_incomplete",
        });

        Assert.That(now.Status, Is.EqualTo("active"));
        Assert.That(now.TrialEnd, Is.EqualTo(now.Items.Data[0].CurrentPeriodStart));
        Assert.That(now.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(now.Items.Data[0].CurrentPeriodStart.AddMonths(1)));
        var invoice = await new InvoiceService(Stripe).GetAsync(now.LatestInvoiceId);
        Assert.That((invoice.BillingReason, invoice.AmountPaid, invoice.Status), Is.EqualTo(("subscription_update", 5000L, "paid")));
    }

    [Test]
    public async Task Should_cancel_at_once_on_delete()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await SubscribeAndPay(price);
        sub = await new SubscriptionService(Stripe).CancelAsync(sub.Id);
        Assert.That(sub.Status, Is.EqualTo("canceled"));
        Assert.That(sub.CanceledAt, Is.Not.Null);
        Assert.That(await EventTypes(), Does.Contain("customer.subscription.deleted"));
        var all = await new SubscriptionService(Stripe).ListAsync(new SubscriptionListOptions { Status = "all" });
        Assert.That(all.Data, Has.Count.EqualTo(1));
    }

    /// <summary>A trial started without a card (<c>payment_method_collection=if_required</c>), and what its end does.</summary>
    private static async Task<Subscription> TrialWithoutCard(Price price, string missingPaymentMethod)
    {
        var customer = await CreateCustomer();
        var session = await new Stripe.Checkout.SessionService(Stripe).CreateAsync(new Stripe.Checkout.SessionCreateOptions
        {
            Mode = "subscription",
            Customer = customer.Id,
            LineItems = [new() { Price = price.Id, Quantity = 1 }],
            SuccessUrl = "https://app.example/success",
            PaymentMethodCollection = "if_required",
            SubscriptionData = new Stripe.Checkout.SessionSubscriptionDataOptions
            {
                TrialPeriodDays = 7,
                TrialSettings = new Stripe.Checkout.SessionSubscriptionDataTrialSettingsOptions
                {
                    EndBehavior = new Stripe.Checkout.SessionSubscriptionDataTrialSettingsEndBehaviorOptions { MissingPaymentMethod = missingPaymentMethod },
                },
            },
        });
        Assert.That(session.PaymentMethodCollection, Is.EqualTo("if_required"));
        using var response = await Pay(session.Id, card: "");
        Assert.That((int)response.StatusCode, Is.EqualTo(303), await response.Content.ReadAsStringAsync());
        session = await new Stripe.Checkout.SessionService(Stripe).GetAsync(session.Id);
        var sub = await new SubscriptionService(Stripe).GetAsync(session.SubscriptionId);
        Assert.That((sub.Status, sub.TrialSettings.EndBehavior.MissingPaymentMethod), Is.EqualTo(("trialing", missingPaymentMethod)));
        var card = await new CustomerService(Stripe).GetAsync(customer.Id);
        Assert.That(card.InvoiceSettings?.DefaultPaymentMethodId, Is.Null, "no card was taken");
        return sub;
    }

    [TestCase("cancel", "canceled", "customer.subscription.deleted")]
    [TestCase("pause", "paused", "customer.subscription.paused")]
    [TestCase("create_invoice", "past_due", "customer.subscription.updated")]
    public async Task Should_end_a_trial_without_a_card_as_its_end_behavior_says(string missingPaymentMethod, string status, string lastEvent)
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await TrialWithoutCard(price, missingPaymentMethod);

        await AdvanceTo(new DateTimeOffset(sub.TrialEnd!.Value).ToUnixTimeSeconds() + 60);

        var ended = await new SubscriptionService(Stripe).GetAsync(sub.Id);
        Assert.That(ended.Status, Is.EqualTo(status));
        Assert.That((await EventTypes()).Last(), Is.EqualTo(lastEvent));
        var invoices = (await new InvoiceService(Stripe).ListAsync(new InvoiceListOptions { Subscription = sub.Id })).Data;
        Assert.That(invoices.Count(i => i.Status == "paid" && i.AmountPaid > 0), Is.Zero, "nothing was charged");
        Assert.That(invoices, Has.Count.EqualTo(missingPaymentMethod == "create_invoice" ? 2 : 1), "only create_invoice bills the period");
    }

    [Test]
    public async Task Should_charge_a_trial_without_a_card_at_its_end_once_a_card_was_added()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await TrialWithoutCard(price, "cancel");
        using (var added = await Http.PostAsJsonAsync($"/_sim/customers/{sub.CustomerId}/card", new { card = "4242424242424242" }))
        {
            Assert.That(added.IsSuccessStatusCode, Is.True, await added.Content.ReadAsStringAsync());
        }

        await AdvanceTo(new DateTimeOffset(sub.TrialEnd!.Value).ToUnixTimeSeconds() + 60);

        var renewed = await new SubscriptionService(Stripe).GetAsync(sub.Id);
        Assert.That(renewed.Status, Is.EqualTo("active"));
        var invoice = await new InvoiceService(Stripe).GetAsync(renewed.LatestInvoiceId);
        Assert.That((invoice.Status, invoice.AmountPaid), Is.EqualTo(("paid", 500L)));
    }

    [Test]
    public async Task Should_refuse_a_checkout_without_a_card_unless_collection_is_if_required()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var customer = await CreateCustomer();
        var session = await CreateSubscriptionCheckout(price, customer.Id, trialDays: 7);
        Assert.That(session.PaymentMethodCollection, Is.EqualTo("always"));

        using var response = await Pay(session.Id, card: "");

        Assert.That((int)response.StatusCode, Is.EqualTo(200), "the page again, with the error");
        Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("Your card number is incorrect."));
        Assert.That((await new Stripe.Checkout.SessionService(Stripe).GetAsync(session.Id)).Status, Is.EqualTo("open"));
    }

    [Test]
    public async Task Should_neither_renew_nor_invoice_a_paused_subscription_until_it_is_resumed()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await SubscribeAndPay(price);
        var periodEnd = sub.Items.Data[0].CurrentPeriodEnd;
        var subscriptions = new SubscriptionService(Stripe);

        var paused = await subscriptions.PauseAsync(sub.Id, new SubscriptionPauseOptions { Type = "subscription" });
        Assert.That(paused.Status, Is.EqualTo("paused"));
        Assert.That((await EventTypes()).Last(), Is.EqualTo("customer.subscription.paused"));
        var error = Assert.ThrowsAsync<StripeException>(() => subscriptions.PauseAsync(sub.Id, new SubscriptionPauseOptions { Type = "subscription" }));
        Assert.That(error!.StripeError.Code, Is.EqualTo("subscription_not_pausable"), "a paused subscription is not paused again");

        await AdvanceTo(new DateTimeOffset(periodEnd).ToUnixTimeSeconds() + 86400);
        var still = await subscriptions.GetAsync(sub.Id);
        Assert.That((still.Status, still.Items.Data[0].CurrentPeriodEnd), Is.EqualTo(("paused", periodEnd)), "no renewal while paused");
        var invoices = await new InvoiceService(Stripe).ListAsync(new InvoiceListOptions { Subscription = sub.Id });
        Assert.That(invoices.Data, Has.Count.EqualTo(1), "only the first invoice");

        var resumed = await subscriptions.ResumeAsync(sub.Id);
        Assert.That(resumed.Status, Is.EqualTo("active"));
        Assert.That((await EventTypes()).Last(), Is.EqualTo("customer.subscription.resumed"));
    }
}

public sealed class Changing_plans : SimulatorSpec
{
    [Test]
    public async Task Should_charge_the_proration_at_once_with_always_invoice()
    {
        var monthly = await CreatePrice("pro_monthly", 1000);
        var team = await CreatePrice("team_monthly", 3000, productName: "Team");
        var sub = await SubscribeAndPay(monthly);
        var item = sub.Items.Data[0];
        var start = new DateTimeOffset(item.CurrentPeriodStart).ToUnixTimeSeconds();
        var end = new DateTimeOffset(item.CurrentPeriodEnd).ToUnixTimeSeconds();
        var half = start + (end - start) / 2;
        await AdvanceTo(half);

        var preview = await new InvoiceService(Stripe).CreatePreviewAsync(new InvoiceCreatePreviewOptions
        {
            Subscription = sub.Id,
            SubscriptionDetails = new InvoiceSubscriptionDetailsOptions
            {
                Items = [new InvoiceSubscriptionDetailsItemOptions { Id = item.Id, Price = team.Id }],
                ProrationBehavior = "always_invoice",
                ProrationDate = DateTimeOffset.FromUnixTimeSeconds(half).UtcDateTime,
            },
        });
        var remaining = end - half;
        var expected = (long)Math.Round(3000m * remaining / (end - start), MidpointRounding.AwayFromZero)
                       - (long)Math.Round(1000m * remaining / (end - start), MidpointRounding.AwayFromZero);
        Assert.That(preview.AmountDue, Is.EqualTo(expected));
        Assert.That(preview.Lines.Data, Has.Count.EqualTo(2));

        var updated = await new SubscriptionService(Stripe).UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new SubscriptionItemOptions { Id = item.Id, Price = team.Id }],
            ProrationBehavior = "always_invoice",
            ProrationDate = DateTimeOffset.FromUnixTimeSeconds(half).UtcDateTime,
            BillingCycleAnchor = new SubscriptionBillingCycleAnchorOptions { Type = "unchanged" },
            PaymentBehavior = "error_if_incomplete",
            Expand = ["latest_invoice"],
        });
        Assert.That(updated.Items.Data[0].Price.Id, Is.EqualTo(team.Id));
        Assert.That(updated.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(item.CurrentPeriodEnd));
        Assert.That(updated.LatestInvoice.BillingReason, Is.EqualTo("subscription_update"));
        Assert.That(updated.LatestInvoice.AmountPaid, Is.EqualTo(expected));
        Assert.That(updated.LatestInvoice.Status, Is.EqualTo("paid"));
        var types = await EventTypes();
        Assert.That(types.Last(), Is.EqualTo("customer.subscription.updated"));
    }

    [Test]
    public async Task Should_just_switch_the_price_without_prorations()
    {
        var monthly = await CreatePrice("pro_monthly", 1000);
        var lite = await CreatePrice("lite_monthly", 500, productName: "Lite");
        var sub = await SubscribeAndPay(monthly);
        var updated = await new SubscriptionService(Stripe).UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new SubscriptionItemOptions { Id = sub.Items.Data[0].Id, Price = lite.Id }],
            ProrationBehavior = "none",
        });
        Assert.That(updated.Items.Data[0].Price.LookupKey, Is.EqualTo("lite_monthly"));
        Assert.That(updated.LatestInvoiceId, Is.EqualTo(sub.LatestInvoiceId));
        var invoices = await new InvoiceService(Stripe).ListAsync(new InvoiceListOptions { Subscription = sub.Id });
        Assert.That(invoices.Data, Has.Count.EqualTo(1));
    }

    [Test]
    public async Task Should_refuse_an_upgrade_the_card_cannot_pay_with_error_if_incomplete()
    {
        var monthly = await CreatePrice("pro_monthly", 1000);
        var team = await CreatePrice("team_monthly", 3000, productName: "Team");
        var sub = await SubscribeAndPay(monthly, "4000000000000341");
        await Advance(86400);
        var ex = Assert.ThrowsAsync<StripeException>(() => new SubscriptionService(Stripe).UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new SubscriptionItemOptions { Id = sub.Items.Data[0].Id, Price = team.Id }],
            ProrationBehavior = "always_invoice",
            PaymentBehavior = "error_if_incomplete",
        }));
        Assert.That((int)ex!.HttpStatusCode, Is.EqualTo(402));
        Assert.That(ex.StripeError.Type, Is.EqualTo("card_error"));
        var unchanged = await new SubscriptionService(Stripe).GetAsync(sub.Id);
        Assert.That(unchanged.Items.Data[0].Price.Id, Is.EqualTo(monthly.Id));
    }

    [Test]
    public async Task Should_switch_plans_and_cancel_from_the_portal()
    {
        var monthly = await CreatePrice("pro_monthly", 1000);
        var team = await CreatePrice("team_monthly", 3000, productName: "Team");
        var sub = await SubscribeAndPay(monthly);
        var portal = await new Stripe.BillingPortal.SessionService(Stripe).CreateAsync(new Stripe.BillingPortal.SessionCreateOptions
        {
            Customer = sub.CustomerId,
            ReturnUrl = "https://app.example/account",
        });
        Assert.That(portal.Url, Is.EqualTo($"{SimulatorHost.SimulatorUrl}/portal/{portal.Id}"));
        using var page = await Http.GetAsync($"/portal/{portal.Id}");
        var html = await page.Content.ReadAsStringAsync();
        Assert.That(html, Does.Contain("Cancel at period end").And.Contain("https://app.example/account").And.Contain(team.Id));

        using var cancel = await Http.PostAsync($"/portal/{portal.Id}/cancel", new FormUrlEncodedContent(new Dictionary<string, string> { ["subscription"] = sub.Id }));
        Assert.That((int)cancel.StatusCode, Is.EqualTo(303));
        Assert.That((await new SubscriptionService(Stripe).GetAsync(sub.Id)).CancelAtPeriodEnd, Is.True);
        using var resume = await Http.PostAsync($"/portal/{portal.Id}/resume", new FormUrlEncodedContent(new Dictionary<string, string> { ["subscription"] = sub.Id }));
        Assert.That((await new SubscriptionService(Stripe).GetAsync(sub.Id)).CancelAtPeriodEnd, Is.False);
        using var change = await Http.PostAsync($"/portal/{portal.Id}/switch", new FormUrlEncodedContent(new Dictionary<string, string> { ["subscription"] = sub.Id, ["price"] = team.Id }));
        Assert.That((await new SubscriptionService(Stripe).GetAsync(sub.Id)).Items.Data[0].Price.Id, Is.EqualTo(team.Id));
        Assert.That((await EventTypes()).Count(t => t == "customer.subscription.updated"), Is.EqualTo(3));
    }
}

public sealed class Refunding_a_payment : SimulatorSpec
{
    [Test]
    public async Task Should_refund_in_parts_and_refuse_more_than_is_left()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await SubscribeAndPay(price);
        var invoice = await new InvoiceService(Stripe).GetAsync(sub.LatestInvoiceId);
        var payments = await new InvoicePaymentService(Stripe).ListAsync(new InvoicePaymentListOptions { Invoice = invoice.Id });
        var intentId = payments.Data[0].Payment.PaymentIntentId;
        var refunds = new RefundService(Stripe);

        var partial = await refunds.CreateAsync(new RefundCreateOptions { PaymentIntent = intentId, Amount = 200, Reason = "requested_by_customer", Metadata = new() { ["paymentId"] = "p1" } });
        Assert.That(partial.Amount, Is.EqualTo(200));
        Assert.That(partial.Status, Is.EqualTo("succeeded"));
        var ex = Assert.ThrowsAsync<StripeException>(() => refunds.CreateAsync(new RefundCreateOptions { PaymentIntent = intentId, Amount = 400 }));
        Assert.That((int)ex!.HttpStatusCode, Is.EqualTo(400));
        Assert.That(ex.StripeError.Code, Is.EqualTo("amount_too_large"));

        var rest = await refunds.CreateAsync(new RefundCreateOptions { Charge = partial.ChargeId });
        Assert.That(rest.Amount, Is.EqualTo(300));
        var charge = await new ChargeService(Stripe).GetAsync(partial.ChargeId);
        Assert.That(charge.AmountRefunded, Is.EqualTo(500));
        Assert.That(charge.Refunded, Is.True);
        ex = Assert.ThrowsAsync<StripeException>(() => refunds.CreateAsync(new RefundCreateOptions { Charge = charge.Id }));
        Assert.That(ex!.StripeError.Code, Is.EqualTo("charge_already_refunded"));

        var types = await EventTypes();
        Assert.That(types.Count(t => t == "charge.refunded"), Is.EqualTo(2));
        Assert.That(types.Count(t => t == "refund.created"), Is.EqualTo(2));
        var listed = await refunds.ListAsync(new RefundListOptions { PaymentIntent = intentId });
        Assert.That(listed.Data.Select(r => r.Id), Is.EqualTo(new[] { rest.Id, partial.Id }));
    }
}
