namespace Billing.EndToEnd.Tests;

/// <summary>The first seed's subscription lifecycle on the default catalog (1-day grace, 7-day refund window).</summary>
[TestFixture]
[NonParallelizable]
public class Cancelling_and_resuming
{
    [Test]
    public async Task A_cancel_lasts_until_the_period_end_a_resume_undoes_it_and_then_the_user_is_back_on_free()
    {
        var user = "e2e-cancel-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "month");

        var (status, cancelled, _) = await api.PostAsync("/api/subscriptions/me/cancel");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(cancelled.GetProperty("cancelAtPeriodEnd").GetBoolean(), Is.True);
        Assert.That(cancelled.GetProperty("status").GetString(), Is.EqualTo("active"), "access lasts until the period ends");
        await StripeView.AssertBillingMatchesStripeAsync(api, user);

        var resumed = (await api.PostAsync("/api/subscriptions/me/resume")).Body;
        Assert.That(resumed.GetProperty("cancelAtPeriodEnd").GetBoolean(), Is.False);
        await StripeView.AssertBillingMatchesStripeAsync(api, user);

        await api.PostAsync("/api/subscriptions/me/cancel");
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
        using var service = Api.Gateway(Tokens.Service());
        Assert.That((await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, "c1-" + user))).Status, Is.EqualTo(HttpStatusCode.OK),
            "still Pro until the period end");

        var periodEnd = (await api.GetAsync("/api/subscriptions/me")).Body.GetProperty("currentPeriodEnd").GetDateTimeOffset();
        await Simulator.AdvanceAsync(periodEnd - await Simulator.NowAsync() + TimeSpan.FromHours(1));
        var after = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "expired", "the subscription to expire");
        Assert.That(after.GetProperty("planId").GetString(), Is.EqualTo("free"));
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
        var refused = await Eventually.GetAsync(async () => await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, "c2-" + Guid.NewGuid())),
            r => r.Status == HttpStatusCode.PaymentRequired, "consumes to be refused on the free plan");
        Assert.That(refused.Body.GetProperty("code").GetString(), Is.EqualTo("no_subscription"));

        var history = (await api.GetAsync("/api/subscriptions/me/history")).Body.GetProperty("items").EnumerateArray()
            .Select(h => h.GetProperty("change").GetString()).ToList();
        Assert.That(history, Does.Contain("cancel_requested").And.Contain("resume_requested").And.Contain("ended").And.Contain("activated"));
    }

    [Test]
    public async Task A_yearly_subscriber_moving_to_monthly_keeps_the_paid_year_and_is_billed_monthly_from_its_end()
    {
        var user = "e2e-yearly-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "year");

        var (status, change, _) = await api.PostAsync("/api/subscriptions/me/change", new { planId = "pro", interval = "month" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), change.ToString());
        Assert.That(change.GetProperty("kind").GetString(), Is.EqualTo("downgrade"));
        var yearEnd = change.GetProperty("effectiveAt").GetDateTimeOffset();
        var during = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("scheduledChange").ValueKind == JsonValueKind.Object, "the scheduled change to show");
        var scheduled = during.GetProperty("scheduledChange");
        Assert.That((scheduled.GetProperty("planId").GetString(), scheduled.GetProperty("interval").GetString(), scheduled.GetProperty("effectiveAt").GetDateTimeOffset()),
            Is.EqualTo(("pro", "month", yearEnd)));
        Assert.That((during.GetProperty("interval").GetString(), during.GetProperty("currentPeriodEnd").GetDateTimeOffset()), Is.EqualTo(("year", yearEnd)),
            "the paid year is kept, nothing charged now");
        Assert.That((await api.GetAsync("/api/payments/me")).Body.GetProperty("items").GetArrayLength(), Is.EqualTo(1));
        await StripeView.AssertBillingMatchesStripeAsync(api, user);

        await Simulator.AdvanceAsync(yearEnd - await Simulator.NowAsync() + TimeSpan.FromHours(1));
        var after = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("interval").GetString() == "month", "the move to monthly at the year's end", TimeSpan.FromSeconds(30));
        Assert.That((after.GetProperty("planId").GetString(), after.GetProperty("status").GetString()), Is.EqualTo(("pro", "active")));
        Assert.That(after.GetProperty("currentPeriodEnd").GetDateTimeOffset(), Is.EqualTo(yearEnd.AddMonths(1)));
        Assert.That(after.GetProperty("scheduledChange").ValueKind, Is.EqualTo(JsonValueKind.Null), "nothing waits any more");
        var payments = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            items => items.GetArrayLength() >= 2, "the first monthly payment");
        Assert.That(payments[0].GetProperty("amount").GetInt64(), Is.EqualTo(500));
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
    }

    [Test]
    public async Task Concurrent_first_checkouts_create_one_Stripe_customer()
    {
        var user = "e2e-race-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(i =>
            api.PostAsync("/api/subscriptions/checkout", new { planId = "pro", interval = i % 2 == 0 ? "month" : "year" })));
        Assert.That(answers.Select(a => a.Status), Is.All.EqualTo(HttpStatusCode.OK));
        using var stripe = new HttpClient { BaseAddress = TestEnvironment.SimulatorUrl };
        stripe.DefaultRequestHeaders.Authorization = new("Bearer", "sk_test_e2e");
        var found = await stripe.GetFromJsonAsync<JsonElement>($"/v1/customers/search?query={Uri.EscapeDataString($"metadata['userId']:'{user}'")}");
        Assert.That(found.GetProperty("data").GetArrayLength(), Is.EqualTo(1), "one Stripe customer per user");
        var statuses = new List<string>();
        foreach (var id in answers.Select(a => a.Body.GetProperty("checkoutSessionId").GetString()!).Distinct())
        {
            statuses.Add((await stripe.GetFromJsonAsync<JsonElement>($"/v1/checkout/sessions/{id}")).GetProperty("status").GetString()!);
        }
        Assert.That(statuses.Count(s => s == "open"), Is.EqualTo(1), "one open checkout per user: a checkout for the other price expired the previous one");
    }

    [Test]
    public async Task Cancel_and_change_without_a_subscription_answer_404()
    {
        using var api = Api.Gateway(Tokens.User("e2e-nosub-" + Guid.NewGuid().ToString("N")[..8]));
        var (status, problem, _) = await api.PostAsync("/api/subscriptions/me/cancel");
        Assert.That(status, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("no_subscription"));
        Assert.That((await api.PostAsync("/api/subscriptions/me/change", new { planId = "pro", interval = "year" })).Status, Is.EqualTo(HttpStatusCode.NotFound));
    }
}

[TestFixture]
[NonParallelizable]
public class A_failed_renewal
{
    [Test]
    public async Task Goes_past_due_with_grace_then_suspends_and_a_later_payment_restores_access()
    {
        var user = "e2e-dunning-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        using var service = Api.Gateway(Tokens.Service());

        // 4000 0000 0000 0341 pays at checkout and fails every later charge.
        var (_, checkout, _) = await api.PostAsync("/api/subscriptions/checkout", new { planId = "pro", interval = "month" });
        var sessionId = checkout.GetProperty("checkoutSessionId").GetString()!;
        Assert.That((await Simulator.PayAsync(sessionId, "4000000000000341")).Status, Is.EqualTo(HttpStatusCode.SeeOther));
        var active = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "active", "the subscription to be active");
        var periodEnd = active.GetProperty("currentPeriodEnd").GetDateTimeOffset();

        await Simulator.AdvanceAsync(periodEnd - await Simulator.NowAsync() + TimeSpan.FromMinutes(10));
        var pastDue = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "past_due" && s.GetProperty("graceUntil").ValueKind == JsonValueKind.String, "past due with grace");
        var graceUntil = pastDue.GetProperty("graceUntil").GetDateTimeOffset();
        Assert.That(graceUntil - periodEnd, Is.EqualTo(TimeSpan.FromDays(1)).Within(TimeSpan.FromMinutes(15)), "failure time + the catalog's 1-day grace");
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
        await Eventually.GetAsync(async () => (await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, "g-" + Guid.NewGuid()))).Status,
            s => s == HttpStatusCode.OK, "access within grace");

        // Grace passes: access is suspended and consumes say why.
        await Simulator.AdvanceAsync(TimeSpan.FromDays(1) + TimeSpan.FromHours(2));
        var suspended = await Eventually.GetAsync(async () => await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, "s-" + Guid.NewGuid())),
            r => r.Status == HttpStatusCode.PaymentRequired, "consumes to be refused after grace", TimeSpan.FromSeconds(30));
        Assert.That(suspended.Body.GetProperty("code").GetString(), Is.EqualTo("payment_past_due"));

        // The user fixes the card; Stripe's next retry (3 days after the failure) pays and access returns.
        await StripeView.SetCardAsync(user, "4242424242424242");
        await Simulator.AdvanceAsync(TimeSpan.FromDays(2));
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "active", "the subscription to be active again", TimeSpan.FromSeconds(30));
        await Eventually.GetAsync(async () => (await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, "r-" + Guid.NewGuid()))).Status,
            s => s == HttpStatusCode.OK, "access restored", TimeSpan.FromSeconds(30));
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
        var history = (await api.GetAsync("/api/subscriptions/me/history")).Body.GetProperty("items").EnumerateArray()
            .Select(h => h.GetProperty("change").GetString()).ToList();
        Assert.That(history, Does.Contain("payment_failed").And.Contain("access_suspended"));
    }
}
