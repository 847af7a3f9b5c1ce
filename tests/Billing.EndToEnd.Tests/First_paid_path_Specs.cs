namespace Billing.EndToEnd.Tests;

/// <summary>
/// The first seed's product, end to end on the real processes: a user sees Pro, pays through Checkout on the
/// simulator, and their AI service may then spend exactly 250 generations a month.
/// </summary>
[TestFixture]
[NonParallelizable]
public class Paying_for_Pro
{
    private static string NewUser() => "e2e-" + Guid.NewGuid().ToString("N")[..10];

    [Test]
    public async Task The_catalog_shows_the_free_plan_and_Pro_monthly_and_yearly()
    {
        using var api = Api.Gateway();
        var (status, body, _) = await api.GetAsync("/api/plans");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var plans = body.GetProperty("plans").EnumerateArray().ToDictionary(p => p.GetProperty("id").GetString()!);
        Assert.That(plans.Keys, Is.EquivalentTo(new[] { "free", "pro" }));
        Assert.That(plans["free"].GetProperty("prices").GetArrayLength(), Is.Zero);
        var prices = plans["pro"].GetProperty("prices").EnumerateArray()
            .Select(p => (p.GetProperty("interval").GetString(), p.GetProperty("intervalCount").GetInt32(), p.GetProperty("amount").GetInt64(), p.GetProperty("currency").GetString()))
            .ToList();
        Assert.That(prices, Is.EquivalentTo(new[] { ("month", 1, 500L, "usd"), ("year", 1, 5000L, "usd") }));
        var meter = plans["pro"].GetProperty("meters")[0];
        Assert.That((meter.GetProperty("meter").GetString(), meter.GetProperty("limit").GetInt64(), meter.GetProperty("window").GetString()),
            Is.EqualTo(("ai.generation", 250L, "month")));
    }

    [Test]
    public async Task A_new_user_is_on_the_free_plan_and_may_not_generate()
    {
        var user = NewUser();
        using var api = Api.Gateway(Tokens.User(user));
        var (status, sub, _) = await api.GetAsync("/api/subscriptions/me");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((sub.GetProperty("planId").GetString(), sub.GetProperty("status").GetString()), Is.EqualTo(("free", "none")));

        using var service = Api.Gateway(Tokens.Service());
        var (consumed, problem, response) = await service.PostAsync("/api/usage/consume", Consume(user, "k-" + user));
        Assert.That(consumed, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("no_subscription"));
    }

    [Test]
    public async Task Monthly_Pro_allows_exactly_250_a_month_and_the_renewal_resets_it()
    {
        var user = NewUser();
        using var api = Api.Gateway(Tokens.User(user, email: user + "@example.com"));
        await SubscribeAsync(api, "month");

        var sub = (await api.GetAsync("/api/subscriptions/me")).Body;
        Assert.That(sub.GetProperty("interval").GetString(), Is.EqualTo("month"));
        var periodEnd = sub.GetProperty("currentPeriodEnd").GetDateTimeOffset();
        var usage = await MeterAsync(api, m => m.GetProperty("remaining").GetInt64() == 250);
        Assert.That(usage.GetProperty("limit").GetInt64(), Is.EqualTo(250));
        Assert.That(usage.GetProperty("resetsAt").GetDateTimeOffset(), Is.EqualTo(periodEnd).Within(TimeSpan.FromMinutes(1)));

        using var service = Api.Gateway(Tokens.Service());
        var answers = await SpendAsync(service, user, 250, $"m-{user}");
        Assert.That(answers.Count(a => a == HttpStatusCode.OK), Is.EqualTo(250));

        var (refused, problem, _) = await service.PostAsync("/api/usage/consume", Consume(user, $"m-{user}-251"));
        Assert.That(refused, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("quota_exhausted"));
        Assert.That(problem.GetProperty("limit").GetInt64(), Is.EqualTo(250));

        // A retried key answers what it answered first and spends nothing.
        var (again, first, _) = await service.PostAsync("/api/usage/consume", Consume(user, $"m-{user}-7"));
        Assert.That(again, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(first.GetProperty("allowed").GetBoolean(), Is.True);
        Assert.That((await MeterAsync(api, _ => true)).GetProperty("used").GetInt64(), Is.EqualTo(250));

        // A month later Stripe renews the subscription: the invoice is paid and the quota is 250 again.
        await Simulator.AdvanceAsync(periodEnd - await Simulator.NowAsync() + TimeSpan.FromHours(1));
        var renewed = await MeterAsync(api, m => m.GetProperty("remaining").GetInt64() == 250, TimeSpan.FromSeconds(45));
        Assert.That(renewed.GetProperty("resetsAt").GetDateTimeOffset(), Is.GreaterThan(periodEnd));
        var after = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("currentPeriodEnd").GetDateTimeOffset() > periodEnd, "the renewed period");
        Assert.That(after.GetProperty("status").GetString(), Is.EqualTo("active"));
        Assert.That((await service.PostAsync("/api/usage/consume", Consume(user, $"m-{user}-renewed"))).Status, Is.EqualTo(HttpStatusCode.OK));

        var history = (await api.GetAsync("/api/payments/me")).Body.GetProperty("items");
        Assert.That(history.GetArrayLength(), Is.GreaterThanOrEqualTo(2), "the first payment and the renewal");
        Assert.That(history[0].GetProperty("amount").GetInt64(), Is.EqualTo(500));
    }

    [Test]
    public async Task Yearly_Pro_still_resets_the_quota_every_month_anchored_on_the_start()
    {
        var user = NewUser();
        using var api = Api.Gateway(Tokens.User(user));
        await SubscribeAsync(api, "year");
        var sub = (await api.GetAsync("/api/subscriptions/me")).Body;
        Assert.That(sub.GetProperty("interval").GetString(), Is.EqualTo("year"));
        var periodEnd = sub.GetProperty("currentPeriodEnd").GetDateTimeOffset();

        var meter = await MeterAsync(api, m => m.GetProperty("remaining").GetInt64() == 250);
        var firstReset = meter.GetProperty("resetsAt").GetDateTimeOffset();
        Assert.That(firstReset, Is.LessThan(periodEnd).And.GreaterThan(periodEnd.AddMonths(-12).AddDays(27)), "a month after the start, not a year");

        using var service = Api.Gateway(Tokens.Service());
        await SpendAsync(service, user, 10, $"y-{user}");
        Assert.That((await MeterAsync(api, _ => true)).GetProperty("used").GetInt64(), Is.EqualTo(10));

        await Simulator.AdvanceAsync(firstReset - await Simulator.NowAsync() + TimeSpan.FromHours(1));
        var next = await MeterAsync(api, m => m.GetProperty("used").GetInt64() == 0, TimeSpan.FromSeconds(30));
        Assert.That(next.GetProperty("resetsAt").GetDateTimeOffset(), Is.EqualTo(firstReset.AddMonths(1)).Within(TimeSpan.FromDays(3)));
        Assert.That((await api.GetAsync("/api/subscriptions/me")).Body.GetProperty("currentPeriodEnd").GetDateTimeOffset(), Is.EqualTo(periodEnd),
            "still the same yearly period");
    }

    [Test]
    public async Task Checkout_refuses_an_unknown_plan_or_interval_and_a_second_subscription()
    {
        var user = NewUser();
        using var api = Api.Gateway(Tokens.User(user));
        var (unknownPlan, problem, _) = await api.PostAsync("/api/subscriptions/checkout", new { planId = "gold", interval = "month" });
        Assert.That(unknownPlan, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(problem.GetProperty("errors").TryGetProperty("planId", out _), Is.True);
        Assert.That((await api.PostAsync("/api/subscriptions/checkout", new { planId = "pro", interval = "week" })).Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await api.PostAsync("/api/subscriptions/checkout", new { planId = "free", interval = "month" })).Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await api.SendAsync(HttpMethod.Post, "/api/subscriptions/checkout", "{not json")).Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await api.PostAsync("/api/subscriptions/checkout", new { planId = "pro", interval = "month", successUrl = "javascript:alert(1)" })).Status,
            Is.EqualTo(HttpStatusCode.BadRequest));

        await SubscribeAsync(api, "month");
        var (second, conflict, _) = await api.PostAsync("/api/subscriptions/checkout", new { planId = "pro", interval = "year" });
        Assert.That(second, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(conflict.GetProperty("code").GetString(), Is.EqualTo("already_subscribed"));
    }

    /// <summary>Checkout → pay with 4242 on the hosted page → wait until Billing shows the subscription active.</summary>
    internal static Task SubscribeAsync(Api api, string interval) => SubscribeAsync(api, "pro", interval);

    internal static async Task SubscribeAsync(Api api, string planId, string interval, int intervalCount = 1, string expectedStatus = "active")
    {
        var (status, checkout, _) = await api.PostAsync("/api/subscriptions/checkout", new { planId, interval, intervalCount });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), checkout.ToString());
        var sessionId = checkout.GetProperty("checkoutSessionId").GetString()!;
        Assert.That(checkout.GetProperty("url").GetString(), Does.StartWith(TestEnvironment.SimulatorUrl.ToString().TrimEnd('/')));

        var (paid, location) = await Simulator.PayAsync(sessionId);
        Assert.That(paid, Is.EqualTo(HttpStatusCode.SeeOther));
        Assert.That(location?.ToString(), Does.Contain(sessionId), "the success URL names the session");

        await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == expectedStatus && s.GetProperty("planId").GetString() == planId, $"the subscription to be {expectedStatus}");
    }

    private static Task<JsonElement> MeterAsync(Api api, Func<JsonElement, bool> done, TimeSpan? timeout = null) =>
        Seed.MeterAsync(api, "ai.generation", done, timeout);

    private static async Task<HttpStatusCode[]> SpendAsync(Api service, string user, int count, string keyPrefix)
    {
        using var gate = new SemaphoreSlim(16);
        return await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                return (await service.PostAsync("/api/usage/consume", Consume(user, $"{keyPrefix}-{i}"))).Status;
            }
            finally
            {
                gate.Release();
            }
        }));
    }

    internal static object Consume(string user, string key) => new { userId = user, meter = "ai.generation", quantity = 1, idempotencyKey = key };
}
