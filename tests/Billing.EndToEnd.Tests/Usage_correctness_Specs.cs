namespace Billing.EndToEnd.Tests;

/// <summary>
/// The hot path's guarantees on the real processes, through the gateway, on the real PostgreSQL: never overspend, never
/// double-count, exact windows. The stack runs the default catalog (Pro: 250 generations a month).
/// </summary>
[TestFixture]
[NonParallelizable]
public class Usage_correctness
{
    private static string NewUser() => "e2e-u-" + Guid.NewGuid().ToString("N")[..10];

    private static async Task<(string User, Api Api)> ProUserAsync()
    {
        var user = NewUser();
        var api = Api.Gateway(Tokens.User(user, email: user + "@example.com"));
        await Paying_for_Pro.SubscribeAsync(api, "month");
        await UsedAsync(api, m => m.GetProperty("remaining").GetInt64() == 250);
        return (user, api);
    }

    private static async Task<JsonElement> UsedAsync(Api api, Func<JsonElement, bool> done) =>
        await Eventually.GetAsync(async () =>
        {
            var (status, body, _) = await api.GetAsync("/api/usage/me");
            return status == HttpStatusCode.OK ? body.GetProperty("meters")[0] : default;
        }, m => m.ValueKind == JsonValueKind.Object && done(m), "the ai.generation meter");

    private static async Task<(HttpStatusCode Status, JsonElement Body)> ConsumeAsync(Api service, string user, string key)
    {
        var (status, body, _) = await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, key));
        return (status, body);
    }

    [Test]
    public async Task A_thousand_concurrent_consumes_against_250_remaining_allow_exactly_250()
    {
        var (user, api) = await ProUserAsync();
        using (api)
        using (var service = Api.Gateway(Tokens.Service()))
        {
            var answers = await Task.WhenAll(Enumerable.Range(0, 1000).Select(i => ConsumeAsync(service, user, $"c-{user}-{i}")));
            Assert.That(answers.Count(a => a.Status == HttpStatusCode.OK), Is.EqualTo(250));
            Assert.That(answers.Count(a => a.Status == HttpStatusCode.PaymentRequired), Is.EqualTo(750));
            Assert.That(answers.Where(a => a.Status == HttpStatusCode.PaymentRequired).All(a => a.Body.GetProperty("code").GetString() == "quota_exhausted"));
            Assert.That((await UsedAsync(api, _ => true)).GetProperty("used").GetInt64(), Is.EqualTo(250));
        }
    }

    [Test]
    public async Task The_same_thousand_each_sent_twice_under_its_key_still_spend_exactly_250()
    {
        var (user, api) = await ProUserAsync();
        using (api)
        using (var service = Api.Gateway(Tokens.Service()))
        {
            var keys = Enumerable.Range(0, 1000).Select(i => $"d-{user}-{i}").ToList();
            var answers = await Task.WhenAll(keys.Concat(keys).OrderBy(_ => Random.Shared.Next())
                .Select(async key => (Key: key, Answer: await ConsumeAsync(service, user, key))));
            var perKey = answers.GroupBy(a => a.Key).ToList();
            Assert.That(perKey.All(g => g.Select(a => a.Answer.Status).Distinct().Count() == 1), Is.True, "both deliveries of a key get the same answer");
            Assert.That(perKey.Count(g => g.First().Answer.Status == HttpStatusCode.OK), Is.EqualTo(250));
            Assert.That(perKey.Where(g => g.First().Answer.Status == HttpStatusCode.OK)
                .All(g => g.Select(a => a.Answer.Body.GetProperty("consumptionId").GetString()).Distinct().Count() == 1), Is.True);
            Assert.That((await UsedAsync(api, _ => true)).GetProperty("used").GetInt64(), Is.EqualTo(250));
        }
    }

    [Test]
    public async Task Concurrent_reservations_half_committed_half_expired_leave_the_limit_minus_what_was_committed()
    {
        // The stack's catalog has 250 a month: 500 concurrent reservations of 1 against 250 remaining.
        var (user, api) = await ProUserAsync();
        using (api)
        using (var service = Api.Gateway(Tokens.Service()))
        {
            var reserved = await Task.WhenAll(Enumerable.Range(0, 500).Select(async i =>
            {
                var (status, body, _) = await service.PostAsync("/api/usage/reservations",
                    new { userId = user, meter = "ai.generation", quantity = 1, idempotencyKey = $"r-{user}-{i}", ttlSeconds = i % 2 == 0 ? 3600 : 2 });
                return (Status: status, Body: body, Commit: i % 2 == 0);
            }));
            var granted = reserved.Where(r => r.Status == HttpStatusCode.OK).ToList();
            Assert.That(granted.Count, Is.GreaterThanOrEqualTo(250), "every unit of the window, and units that expired and came back");
            Assert.That(reserved.Count(r => r.Status == HttpStatusCode.PaymentRequired), Is.EqualTo(500 - granted.Count));

            var committed = 0L;
            foreach (var r in granted.Where(r => r.Commit))
            {
                var amount = Random.Shared.Next(0, 2);
                var (status, body, _) = await service.PostAsync($"/api/usage/reservations/{r.Body.GetProperty("reservationId").GetString()}/commit",
                    new { quantity = amount });
                Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
                committed += amount;
            }
            var meter = await UsedAsync(api, m => m.GetProperty("used").GetInt64() == committed);
            Assert.That(meter.GetProperty("remaining").GetInt64(), Is.EqualTo(250 - committed));
        }
    }

    [Test]
    public async Task A_monthly_anchor_on_the_31st_resets_on_the_last_day_of_a_short_month_and_at_the_renewal()
    {
        // Move simulated time to the next 31st, 12:00 UTC, and subscribe there.
        var now = await Simulator.NowAsync();
        var day = now.UtcDateTime.Date.AddDays(1);
        while (day.Day != 31)
        {
            day = day.AddDays(1);
        }
        await Simulator.AdvanceAsync(new DateTimeOffset(day.AddHours(12), TimeSpan.Zero) - now);

        var (user, api) = await ProUserAsync();
        using (api)
        using (var service = Api.Gateway(Tokens.Service()))
        {
            var sub = (await api.GetAsync("/api/subscriptions/me")).Body;
            var meter = await UsedAsync(api, _ => true);
            var resetsAt = meter.GetProperty("resetsAt").GetDateTimeOffset();
            Assert.That(resetsAt.Day, Is.EqualTo(DateTime.DaysInMonth(resetsAt.Year, resetsAt.Month)) .Or.EqualTo(31),
                "the 31st, or the last day of a shorter month");
            Assert.That(resetsAt, Is.EqualTo(sub.GetProperty("currentPeriodEnd").GetDateTimeOffset()).Within(TimeSpan.FromMinutes(1)),
                "a monthly price renews where the window resets");

            var spent = await Task.WhenAll(Enumerable.Range(0, 250).Select(i => ConsumeAsync(service, user, $"a-{user}-{i}")));
            Assert.That(spent.All(a => a.Status == HttpStatusCode.OK), Is.True);

            // Two minutes before the anchor (and the renewal): still the old window, used up.
            await Simulator.AdvanceAsync(resetsAt - await Simulator.NowAsync() - TimeSpan.FromMinutes(2));
            await Task.Delay(600); // Billing's clock follows the simulator's every 200 ms
            var (before, problem) = await ConsumeAsync(service, user, $"a-{user}-before");
            Assert.That(before, Is.EqualTo(HttpStatusCode.PaymentRequired));
            Assert.That(problem.GetProperty("resetsAt").GetDateTimeOffset(), Is.EqualTo(resetsAt).Within(TimeSpan.FromSeconds(1)));

            // Two minutes after: a new window, whatever the renewal's webhooks are doing.
            await Simulator.AdvanceAsync(TimeSpan.FromMinutes(4));
            var attempt = 0;
            var after = await Eventually.GetAsync(async () => await ConsumeAsync(service, user, $"a-{user}-after-{attempt++}"),
                a => a.Status == HttpStatusCode.OK, "a consume in the new window");
            Assert.That(after.Body.GetProperty("remaining").GetInt64(), Is.EqualTo(249));
            var next = await UsedAsync(api, m => m.GetProperty("resetsAt").GetDateTimeOffset() > resetsAt);
            var anchor = resetsAt.AddMonths(-1);
            Assert.That(next.GetProperty("resetsAt").GetDateTimeOffset(), Is.EqualTo(new DateTimeOffset(day.AddHours(12), TimeSpan.Zero).AddMonths(2))
                .Within(TimeSpan.FromMinutes(1)), $"back on the anchor's day (anchor {anchor:O})");
        }
    }
}
