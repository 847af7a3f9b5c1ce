using System.Text;

namespace Billing.EndToEnd.Tests;

/// <summary>ARCHITECTURE.md rules 3 and 5 on the real processes: missed webhooks are healed, and no order matters.</summary>
[TestFixture]
[NonParallelizable]
public class Missed_and_misordered_webhooks
{
    private static readonly HttpClient Http = new() { BaseAddress = TestEnvironment.GatewayUrl, Timeout = TimeSpan.FromSeconds(30) };

    [TearDown]
    public Task DeliverAgain() => Simulator.DeliverWebhooksAsync(true);

    [Test]
    public async Task Webhooks_dropped_on_the_floor_are_healed_by_reconciliation()
    {
        var user = "e2e-recon-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Simulator.DeliverWebhooksAsync(false);
        var (_, checkout, _) = await api.PostAsync("/api/subscriptions/checkout", new { planId = "pro", interval = "month" });
        Assert.That((await Simulator.PayAsync(checkout.GetProperty("checkoutSessionId").GetString()!)).Status, Is.EqualTo(HttpStatusCode.SeeOther));
        await Task.Delay(1500);
        Assert.That((await api.GetAsync("/api/subscriptions/me")).Body.GetProperty("status").GetString(), Is.EqualTo("none"), "no webhook arrived");

        using var admin = Api.Gateway(Tokens.Admin());
        var (status, result, _) = await admin.PostAsync("/api/admin/reconcile");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), result.ToString());
        Assert.That(result.GetProperty("recovered").GetInt32(), Is.GreaterThanOrEqualTo(3), "subscription created, invoice paid, checkout completed");
        using (var stripe = new HttpClient { BaseAddress = TestEnvironment.SimulatorUrl })
        {
            // Only the types Billing handles are recovered: the account's other events (invoice.created, payment_intent.*,
            // charge.succeeded, …) were never missed webhooks.
            stripe.DefaultRequestHeaders.Authorization = new("Bearer", "sk_test_e2e");
            var types = new List<string>();
            foreach (var id in result.GetProperty("recoveredIds").EnumerateArray().Select(i => i.GetString()!))
            {
                types.Add((await stripe.GetFromJsonAsync<JsonElement>($"/v1/events/{id}")).GetProperty("type").GetString()!);
            }
            Assert.That(types.Distinct(), Is.SubsetOf(new[]
            {
                // The webhook endpoint's list (docs/PRODUCTION.md §4); other tests' undelivered events may be among them.
                "checkout.session.completed", "checkout.session.async_payment_succeeded", "checkout.session.async_payment_failed",
                "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
                "customer.subscription.trial_will_end", "customer.subscription.paused", "customer.subscription.resumed",
                "invoice.paid", "invoice.payment_failed", "charge.refunded", "charge.refund.updated", "charge.dispute.created",
                "charge.dispute.closed", "charge.dispute.funds_withdrawn", "subscription_schedule.created", "subscription_schedule.updated",
                "subscription_schedule.released", "subscription_schedule.canceled", "subscription_schedule.completed",
            }), string.Join(", ", types));
        }

        await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "active", "the healed subscription");
        await Seed.MeterAsync(api, "ai.generation", m => m.GetProperty("remaining").GetInt64() == 250);
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
        var again = (await admin.PostAsync("/api/admin/reconcile")).Body;
        Assert.That(again.GetProperty("recovered").GetInt32(), Is.Zero, "a second run finds nothing new");
    }

    [Test]
    public async Task Any_order_with_duplicates_ends_in_Stripes_state_in_every_service()
    {
        const int orderings = 6;
        var users = Enumerable.Range(0, orderings).Select(i => $"e2e-order{i}-{Guid.NewGuid().ToString("N")[..6]}").ToList();
        var apis = users.Select(u => Api.Gateway(Tokens.User(u))).ToList();
        await Simulator.DeliverWebhooksAsync(false);
        var since = await Simulator.NowAsync();

        // One lifecycle per user, all in lockstep on the simulator: pay (two with a card that fails at renewal),
        // renew a month later, then cancel at period end for half of them.
        for (var i = 0; i < orderings; i++)
        {
            var (_, checkout, _) = await apis[i].PostAsync("/api/subscriptions/checkout", new { planId = "pro", interval = "month" });
            Assert.That((await Simulator.PayAsync(checkout.GetProperty("checkoutSessionId").GetString()!, i % 3 == 0 ? "4000000000000341" : "4242424242424242")).Status,
                Is.EqualTo(HttpStatusCode.SeeOther));
        }
        await Simulator.AdvanceAsync(TimeSpan.FromDays(31) + TimeSpan.FromHours(1));
        var customers = new Dictionary<string, string>();
        foreach (var user in users)
        {
            customers[await StripeView.CustomerOfAsync(user)] = user;
        }
        using var stripe = new HttpClient { BaseAddress = TestEnvironment.SimulatorUrl };
        stripe.DefaultRequestHeaders.Authorization = new("Bearer", "sk_test_e2e");
        for (var i = 0; i < orderings; i += 2)
        {
            var sub = await StripeView.SubscriptionOfAsync(users[i]);
            using var response = await stripe.PostAsync($"/v1/subscriptions/{sub.GetProperty("id").GetString()}",
                new FormUrlEncodedContent(new Dictionary<string, string> { ["cancel_at_period_end"] = "true" }));
            response.EnsureSuccessStatusCode();
        }

        // Every event of these customers, delivered by us: shuffled, a third of them twice, several at once.
        var events = (await Simulator.EventsAsync())
            .Where(e => CustomerOf(e) is { } c && customers.ContainsKey(c))
            .ToList();
        Assert.That(events.Count, Is.GreaterThan(orderings * 5));
        var random = new Random(20261125);
        foreach (var (user, index) in users.Select((u, i) => (u, i)))
        {
            var mine = events.Where(e => customers[CustomerOf(e)!] == user).ToList();
            var deliveries = mine.Concat(mine.Where(_ => random.Next(3) == 0)).OrderBy(_ => random.Next()).ToList();
            TestContext.Progress.WriteLine($"ordering {index + 1}: {deliveries.Count} deliveries of {mine.Count} events: " +
                string.Join(" ", deliveries.Select(d => d.GetProperty("type").GetString())));
            foreach (var batch in deliveries.Chunk(3))
            {
                await Task.WhenAll(batch.Select(async e =>
                {
                    var body = e.GetRawText();
                    using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/stripe") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                    request.Headers.TryAddWithoutValidation("Stripe-Signature", StripeSignatures.Header(body));
                    using var response = await Http.SendAsync(request);
                    Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
                }));
            }
        }

        // In every service, the state is what in-order delivery gives: Stripe's final object.
        foreach (var (user, api) in users.Zip(apis))
        {
            await StripeView.AssertBillingMatchesStripeAsync(api, user);
            var stripeSub = await StripeView.SubscriptionOfAsync(user);
            var entitled = stripeSub.GetProperty("status").GetString() is "active" or "trialing" or "past_due";
            var meter = await Seed.MeterAsync(api, "ai.generation", m => m.GetProperty("limit").GetInt64() == (entitled ? 250 : 0));
            Assert.That(meter.GetProperty("used").GetInt64(), Is.Zero);
            var paidInvoices = await CountPaidInvoicesAsync(stripe, stripeSub.GetProperty("id").GetString()!);
            var payments = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items").GetArrayLength(),
                n => n == paidInvoices, "one payment per paid invoice");
            Assert.That(payments, Is.EqualTo(paidInvoices), "no payment recorded twice");
            api.Dispose();
        }
        TestContext.Progress.WriteLine($"Event order: {orderings} orderings of real lifecycles delivered with duplicates; every service ended in Stripe's state.");
        _ = since;
    }

    private static string? CustomerOf(JsonElement e)
    {
        var obj = e.GetProperty("data").GetProperty("object");
        return obj.TryGetProperty("customer", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()
            : obj.TryGetProperty("object", out var o) && o.GetString() == "customer" ? obj.GetProperty("id").GetString() : null;
    }

    private static async Task<int> CountPaidInvoicesAsync(HttpClient stripe, string subscriptionId)
    {
        var list = await stripe.GetFromJsonAsync<JsonElement>($"/v1/invoices?subscription={subscriptionId}&status=paid&limit=100");
        return list.GetProperty("data").EnumerateArray().Count(i => i.GetProperty("amount_paid").GetInt64() > 0);
    }
}

[TestFixture]
[NonParallelizable]
public class Refunding_a_payment
{
    [Test]
    public async Task In_full_ends_the_subscription_through_Stripes_own_event()
    {
        var user = "e2e-refund-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "month");
        var payment = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            items => items.GetArrayLength() == 1, "the payment");

        using var admin = Api.Gateway(Tokens.Admin());
        var (status, refund, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId = payment[0].GetProperty("id").GetString(), reason = "requested_by_customer" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), refund.ToString());
        Assert.That(refund.GetProperty("amount").GetInt64(), Is.EqualTo(500));

        var ended = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "canceled", "access to end after the refund");
        Assert.That(ended.GetProperty("planId").GetString(), Is.EqualTo("free"));
        var refunded = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items")[0],
            p => p.GetProperty("status").GetString() == "refunded", "the payment to show refunded");
        Assert.That(refunded.GetProperty("amountRefunded").GetInt64(), Is.EqualTo(500));
        using var service = Api.Gateway(Tokens.Service());
        await Eventually.GetAsync(async () => (await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, Guid.NewGuid().ToString()))).Status,
            s => s == HttpStatusCode.PaymentRequired, "no more generations");

        var (again, problem, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId = payment[0].GetProperty("id").GetString() });
        Assert.That(again, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("already_refunded"));
    }

    [Test]
    public async Task In_full_of_an_earlier_period_keeps_access_and_of_the_current_period_ends_it()
    {
        var user = "e2e-refund-old-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "month");
        await Simulator.AdvanceAsync(TimeSpan.FromDays(31) + TimeSpan.FromHours(1));
        var payments = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            items => items.GetArrayLength() == 2, "the first payment and the renewal");
        var renewal = payments.EnumerateArray().MaxBy(p => p.GetProperty("createdAt").GetDateTimeOffset()).GetProperty("id").GetString();
        var first = payments.EnumerateArray().MinBy(p => p.GetProperty("createdAt").GetDateTimeOffset()).GetProperty("id").GetString();

        using var admin = Api.Gateway(Tokens.Admin());
        var (status, refund, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId = first, force = true });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), refund.ToString());
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items").EnumerateArray()
                .Single(p => p.GetProperty("id").GetString() == first),
            p => p.GetProperty("status").GetString() == "refunded", "the first period's payment to show refunded");
        var history = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me/history")).Body,
            h => h.ToString().Contains("did not pay for the current period"), "the refund to be handled by Subscriptions");
        Assert.That((await api.GetAsync("/api/subscriptions/me")).Body.GetProperty("status").GetString(), Is.EqualTo("active"), history.ToString());
        using var service = Api.Gateway(Tokens.Service());
        Assert.That((await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, Guid.NewGuid().ToString()))).Status,
            Is.EqualTo(HttpStatusCode.OK), "the current period stays paid for");

        (status, refund, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId = renewal });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), refund.ToString());
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "canceled", "access to end after the current period's refund");
    }

    [Test]
    public async Task In_full_of_the_payment_made_before_a_change_to_yearly_keeps_the_year_the_change_paid_for()
    {
        var user = "e2e-refund-upgraded-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "month");
        var monthly = (await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            items => items.GetArrayLength() == 1, "the first month's payment"))[0].GetProperty("id").GetString();
        await Simulator.AdvanceAsync(TimeSpan.FromDays(2));
        var (changed, change, _) = await api.PostAsync("/api/subscriptions/me/change", new { planId = "pro", interval = "year" });
        Assert.That(changed, Is.EqualTo(HttpStatusCode.OK), change.ToString());
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            items => items.GetArrayLength() == 2, "the change's payment: a new yearly period, the month's unused time credited");

        using var admin = Api.Gateway(Tokens.Admin());
        var (status, refund, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId = monthly });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), refund.ToString());

        var history = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me/history")).Body,
            h => h.ToString().Contains("did not pay for the current period"), "the refund to be handled by Subscriptions");
        var subscription = (await api.GetAsync("/api/subscriptions/me")).Body;
        Assert.That((subscription.GetProperty("status").GetString(), subscription.GetProperty("interval").GetString()), Is.EqualTo(("active", "year")),
            history.ToString());
    }

    [Test]
    public async Task That_fails_shows_the_payment_unrefunded_and_can_be_made_again()
    {
        var user = "e2e-refund-failed-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "year");
        var paymentId = (await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            items => items.GetArrayLength() == 1, "the payment"))[0].GetProperty("id").GetString();
        using var admin = Api.Gateway(Tokens.Admin());
        var (status, refund, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId, amount = 1000 });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), refund.ToString());
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items")[0],
            p => p.GetProperty("amountRefunded").GetInt64() == 1000, "the partial refund");

        await Simulator.FailRefundAsync(refund.GetProperty("refundId").GetString()!); // the card was closed

        var back = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items")[0],
            p => p.GetProperty("amountRefunded").GetInt64() == 0, "the failed refund to be taken back");
        Assert.That(back.GetProperty("status").GetString(), Is.EqualTo("paid"), back.ToString());
        var (again, second, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId, amount = 1000 });
        Assert.That(again, Is.EqualTo(HttpStatusCode.OK), second.ToString());
        Assert.That(second.GetProperty("refundId").GetString(), Is.Not.EqualTo(refund.GetProperty("refundId").GetString()), "a new refund, not the failed one");
        var refunded = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items")[0],
            p => p.GetProperty("amountRefunded").GetInt64() == 1000, "the second refund");
        Assert.That(refunded.GetProperty("status").GetString(), Is.EqualTo("partially_refunded"));
        Assert.That((await api.GetAsync("/api/subscriptions/me")).Body.GetProperty("status").GetString(), Is.EqualTo("active"));
    }

    [Test]
    public async Task Outside_the_7_day_window_needs_force_and_a_partial_refund_keeps_access()
    {
        var user = "e2e-refund-late-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "year");
        var paymentId = (await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            items => items.GetArrayLength() == 1, "the payment"))[0].GetProperty("id").GetString();
        await Simulator.AdvanceAsync(TimeSpan.FromDays(8));

        using var admin = Api.Gateway(Tokens.Admin());
        var (late, problem, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId, amount = 1000 });
        Assert.That(late, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("outside_refund_window"));

        var (forced, refund, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId, amount = 1000, force = true });
        Assert.That(forced, Is.EqualTo(HttpStatusCode.OK), refund.ToString());
        var partial = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items")[0],
            p => p.GetProperty("status").GetString() == "partially_refunded", "the partial refund");
        Assert.That(partial.GetProperty("amountRefunded").GetInt64(), Is.EqualTo(1000));
        Assert.That((await api.GetAsync("/api/subscriptions/me")).Body.GetProperty("status").GetString(), Is.EqualTo("active"));

        var (tooMuch, _, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId, amount = 999_999, force = true });
        Assert.That(tooMuch, Is.EqualTo(HttpStatusCode.BadRequest));
        var (unknown, _, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId = "in_nope" });
        Assert.That(unknown, Is.EqualTo(HttpStatusCode.NotFound));
        var (userCall, _, _) = await api.PostAsync("/api/admin/refunds", new { paymentId });
        Assert.That(userCall, Is.EqualTo(HttpStatusCode.Forbidden));
    }
}

[TestFixture]
[NonParallelizable]
public class A_chargeback
{
    [Test]
    public async Task Of_a_subscription_payment_ends_the_subscription_at_once_and_the_payment_shows_it()
    {
        var user = "e2e-dispute-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "month");
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items").GetArrayLength(), n => n == 1, "the payment");
        var charge = (await StripeView.ChargesOfAsync(user)).Single();

        var dispute = await StripeView.DisputeAsync(charge.GetProperty("id").GetString()!);

        var ended = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "canceled", "access to end after the chargeback");
        Assert.That(ended.GetProperty("planId").GetString(), Is.EqualTo("free"));
        var payment = (await api.GetAsync("/api/payments/me")).Body.GetProperty("items")[0];
        Assert.That(payment.GetProperty("disputeStatus").GetString(), Is.EqualTo(dispute.GetProperty("status").GetString()));
        var history = (await api.GetAsync("/api/subscriptions/me/history")).Body.ToString();
        Assert.That(history, Does.Contain("disputed"));
        using var service = Api.Gateway(Tokens.Service());
        await Eventually.GetAsync(async () => (await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, Guid.NewGuid().ToString()))).Status,
            s => s == HttpStatusCode.PaymentRequired, "no more generations");
    }
}
