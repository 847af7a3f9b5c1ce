using System.Collections.Concurrent;
using System.Diagnostics;

namespace Billing.EndToEnd.Tests;

/// <summary>
/// ARCHITECTURE.md rule 5 on the real processes: parts of Billing fail while Stripe's webhooks and AI services' consumes
/// arrive — RabbitMQ is stopped, Payments and Usage are killed with SIGKILL — and afterwards nothing is lost and nothing
/// is applied twice. The broker is taken away with <c>deploy/lib/rabbitctl.sh</c>, services with
/// <c>deploy/lib/stackctl.sh</c>, both on the same profile and ports as the running stack (the environment that
/// <c>deploy/billing test</c> exports).
/// </summary>
[TestFixture]
[NonParallelizable]
public class Webhook_faults
{
    private static string Profile => Environment.GetEnvironmentVariable("BILLING_PROFILE") is { Length: > 0 } p ? p : "test";

    private static readonly HttpClient Sim = new() { BaseAddress = TestEnvironment.SimulatorUrl, Timeout = TimeSpan.FromSeconds(30) };

    [OneTimeTearDown]
    public async Task BringEverythingBack()
    {
        // In case a test failed half-way: the next fixtures need the broker and every service.
        await ScriptAsync("rabbitctl.sh", Profile, "start_app");
        await ScriptAsync("stackctl.sh", Profile, "start", "payments");
        await ScriptAsync("stackctl.sh", Profile, "start", "usage");
    }

    [Test]
    public async Task With_RabbitMQ_stopped_a_burst_of_paid_checkouts_is_acknowledged_and_every_subscription_arrives_once_it_returns()
    {
        const int count = 20;
        var users = Enumerable.Range(0, count).Select(i => $"e2e-nobroker{i}-{Guid.NewGuid().ToString("N")[..6]}").ToList();
        var apis = users.Select(u => Api.Gateway(Tokens.User(u))).ToList();
        var sessions = await Task.WhenAll(apis.Select(CheckoutAsync));

        var stopped = Stopwatch.StartNew();
        await ScriptAsync("rabbitctl.sh", Profile, "stop_app");
        try
        {
            await ForEachAsync(sessions, 5, async session => Assert.That((await Simulator.PayAsync(session)).Status, Is.EqualTo(HttpStatusCode.SeeOther)));

            // Every webhook about these users is acknowledged with 200 while the broker is away.
            var events = await Eventually.GetAsync(() => EventsOfAsync(users), e =>
                    e.Count(x => x.Type == "checkout.session.completed") == count && e.All(x => x.Acknowledged),
                "every webhook of the burst to be acknowledged with 200", TimeSpan.FromSeconds(45));
            Assert.That(events.Select(e => e.Type), Does.Contain("customer.subscription.created").And.Contain("invoice.paid"));
            TestContext.Progress.WriteLine($"broker down: {events.Count} webhooks of {count} checkouts acknowledged in {stopped.Elapsed.TotalSeconds:F1} s");

            // Nothing could be published: no quota yet.
            var meter = (await apis[0].GetAsync("/api/usage/me")).Body.GetProperty("meters")[0];
            Assert.That(meter.GetProperty("limit").GetInt64(), Is.Zero, "the subscription events wait in Payments' outbox");
        }
        finally
        {
            await ScriptAsync("rabbitctl.sh", Profile, "start_app");
        }

        var back = Stopwatch.StartNew();
        foreach (var (user, api) in users.Zip(apis))
        {
            var meter = await Seed.MeterAsync(api, "ai.generation", m => m.GetProperty("limit").GetInt64() == 250, TimeSpan.FromSeconds(60));
            Assert.That((meter.GetProperty("used").GetInt64(), meter.GetProperty("remaining").GetInt64()), Is.EqualTo((0L, 250L)), user);
            await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
                s => s.GetProperty("status").GetString() == "active", "the subscription of " + user);
            var payments = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items").GetArrayLength(),
                n => n >= 1, "the payment of " + user);
            Assert.That(payments, Is.EqualTo(1), $"{user}: one payment, recorded once");
        }
        TestContext.Progress.WriteLine($"broker back: every subscription and quota arrived within {back.Elapsed.TotalSeconds:F1} s");
        await Task.Delay(1000); // a late duplicate would show now
        foreach (var api in apis)
        {
            Assert.That((await api.GetAsync("/api/payments/me")).Body.GetProperty("items").GetArrayLength(), Is.EqualTo(1));
            Assert.That((await api.GetAsync("/api/usage/me")).Body.GetProperty("meters")[0].GetProperty("limit").GetInt64(), Is.EqualTo(250));
            api.Dispose();
        }
    }

    [Test]
    public async Task Payments_killed_mid_burst_loses_no_webhook_and_applies_none_twice()
    {
        const int count = 10;
        var users = Enumerable.Range(0, count).Select(i => $"e2e-kill9pay{i}-{Guid.NewGuid().ToString("N")[..6]}").ToList();
        var apis = users.Select(u => Api.Gateway(Tokens.User(u))).ToList();
        var sessions = await Task.WhenAll(apis.Select(CheckoutAsync));

        // Half pay, and while their webhooks arrive Payments dies; the other half pay while it is down.
        await ForEachAsync(sessions[..(count / 2)], 5, async session => Assert.That((await Simulator.PayAsync(session)).Status, Is.EqualTo(HttpStatusCode.SeeOther)));
        await ScriptAsync("stackctl.sh", Profile, "kill9", "payments");
        await ForEachAsync(sessions[(count / 2)..], 5, async session => Assert.That((await Simulator.PayAsync(session)).Status, Is.EqualTo(HttpStatusCode.SeeOther)));
        await Task.Delay(500);
        var refused = (await EventsOfAsync(users)).Count(e => e.Attempts.Any(a => a != 200));
        TestContext.Progress.WriteLine($"Payments down: {refused} webhooks refused so far (the simulator retries them)");
        Assert.That(refused, Is.GreaterThan(0), "some webhooks arrived while Payments was down");
        await ScriptAsync("stackctl.sh", Profile, "start", "payments");

        var events = await Eventually.GetAsync(() => EventsOfAsync(users), e =>
                e.Count(x => x.Type == "checkout.session.completed") == count && e.All(x => x.Acknowledged),
            "every webhook to be acknowledged after the restart (simulator retries)", TimeSpan.FromSeconds(60));
        Assert.That(events.Count(e => e.Attempts.Count > 1), Is.GreaterThan(0), "some were delivered more than once");

        foreach (var (user, api) in users.Zip(apis))
        {
            var meter = await Seed.MeterAsync(api, "ai.generation", m => m.GetProperty("limit").GetInt64() == 250, TimeSpan.FromSeconds(30));
            Assert.That(meter.GetProperty("remaining").GetInt64(), Is.EqualTo(250), user);
            Assert.That(await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items").GetArrayLength(),
                n => n >= 1, "the payment of " + user), Is.EqualTo(1), $"{user}: one payment");
        }
        await Task.Delay(1000);
        foreach (var api in apis)
        {
            Assert.That((await api.GetAsync("/api/payments/me")).Body.GetProperty("items").GetArrayLength(), Is.EqualTo(1), "nothing applied twice");
            Assert.That((await api.GetAsync("/api/subscriptions/me")).Body.GetProperty("status").GetString(), Is.EqualTo("active"));
            api.Dispose();
        }
    }

    [Test]
    public async Task Usage_killed_while_consumes_are_in_flight_counts_every_acknowledged_consume_once()
    {
        var user = $"e2e-kill9usage-{Guid.NewGuid().ToString("N")[..8]}";
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "month");
        await Seed.MeterAsync(api, "ai.generation", m => m.GetProperty("limit").GetInt64() == 250);

        const int count = 200;
        var keys = Enumerable.Range(0, count).Select(i => $"k9-{user}-{i}").ToList();
        var answers = new ConcurrentDictionary<string, HttpStatusCode?>();
        using var service = Api.Gateway(Tokens.Service());
        using var killed = new SemaphoreSlim(0);
        var killer = Task.Run(async () =>
        {
            await Eventually.GetAsync(() => Task.FromResult(answers.Count), n => n >= 40, "40 answered consumes");
            await ScriptAsync("stackctl.sh", Profile, "kill9", "usage");
            killed.Release();
        });
        // Paced (4 at a time, ~50 a second) so that the kill lands in the middle of the stream.
        await ForEachAsync(keys, 4, async key =>
        {
            await Task.Delay(60);
            try
            {
                answers[key] = (await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, key))).Status;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                answers[key] = null; // cut off: no answer
            }
        });
        await killer;
        var acknowledged = answers.Where(a => a.Value == HttpStatusCode.OK).Select(a => a.Key).ToHashSet();
        var unanswered = answers.Where(a => a.Value != HttpStatusCode.OK).Select(a => a.Key).ToList();
        TestContext.Progress.WriteLine($"Usage killed: {acknowledged.Count} consumes acknowledged, {unanswered.Count} refused or cut off " +
            $"({string.Join(", ", answers.Values.GroupBy(v => v?.ToString() ?? "no answer").Select(g => $"{g.Key}: {g.Count()}"))})");
        Assert.That(acknowledged.Count, Is.InRange(40, count - 1), "some before the kill, some not");

        await ScriptAsync("stackctl.sh", Profile, "start", "usage");
        var used = (await Seed.MeterAsync(api, "ai.generation", _ => true)).GetProperty("used").GetInt64();
        // A consume whose answer was lost in the crash may have committed: at most the ones cut off mid-request.
        Assert.That(used, Is.GreaterThanOrEqualTo(acknowledged.Count), "every acknowledged consume is counted");
        Assert.That(used, Is.LessThanOrEqualTo(acknowledged.Count + answers.Count(a => a.Value is null or HttpStatusCode.BadGateway)),
            "nothing beyond what was sent");

        // The AI service retries what got no 200 with the same keys: each is counted once, the acknowledged ones not again.
        foreach (var key in unanswered)
        {
            var (status, body, _) = await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, key));
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        }
        foreach (var key in acknowledged.Take(20))
        {
            Assert.That((await service.PostAsync("/api/usage/consume", Paying_for_Pro.Consume(user, key))).Status, Is.EqualTo(HttpStatusCode.OK));
        }
        var meter = (await Seed.MeterAsync(api, "ai.generation", _ => true));
        Assert.That(meter.GetProperty("used").GetInt64(), Is.EqualTo(count), "each of the 200 keys counted exactly once");
        Assert.That(meter.GetProperty("remaining").GetInt64(), Is.EqualTo(250 - count));
    }

    private static async Task<string> CheckoutAsync(Api api)
    {
        var (status, checkout, _) = await api.PostAsync("/api/subscriptions/checkout", new { planId = "pro", interval = "month" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), checkout.ToString());
        return checkout.GetProperty("checkoutSessionId").GetString()!;
    }

    private sealed record SimEvent(string Id, string Type, IReadOnlyList<int?> Attempts)
    {
        public bool Acknowledged => Attempts.Any(a => a == 200);
    }

    /// <summary>The simulator's events about these users (their checkouts, subscriptions, invoices…) with their delivery attempts.</summary>
    private static async Task<IReadOnlyList<SimEvent>> EventsOfAsync(IReadOnlyCollection<string> users)
    {
        var all = (await Sim.GetFromJsonAsync<JsonElement>("/_sim/events")).GetProperty("data").EnumerateArray().ToList();
        var customers = new HashSet<string>();
        foreach (var e in all)
        {
            var obj = e.GetProperty("event").GetProperty("data").GetProperty("object");
            var text = obj.GetRawText();
            if (users.Any(u => text.Contains('"' + u + '"', StringComparison.Ordinal))
                && obj.TryGetProperty("customer", out var c) && c.ValueKind == JsonValueKind.String)
            {
                customers.Add(c.GetString()!);
            }
        }
        return all.Where(e =>
            {
                var obj = e.GetProperty("event").GetProperty("data").GetProperty("object");
                var customer = obj.TryGetProperty("customer", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()
                    : obj.GetProperty("object").GetString() == "customer" ? obj.GetProperty("id").GetString() : null;
                return customer is not null && customers.Contains(customer);
            })
            .Select(e => new SimEvent(e.GetProperty("id").GetString()!, e.GetProperty("type").GetString()!,
                e.GetProperty("attempts").EnumerateArray()
                    .Select(a => a.GetProperty("status").ValueKind == JsonValueKind.Number ? a.GetProperty("status").GetInt32() : (int?)null).ToList()))
            .ToList();
    }

    private static async Task ForEachAsync<T>(IEnumerable<T> items, int parallel, Func<T, Task> action) =>
        await Parallel.ForEachAsync(items, new ParallelOptions { MaxDegreeOfParallelism = parallel }, async (item, _) => await action(item));

    /// <summary>Runs <c>deploy/lib/&lt;script&gt;</c> with this process's environment (the running stack's ports and prefixes).</summary>
    private static async Task ScriptAsync(string script, params string[] args)
    {
        var watch = Stopwatch.StartNew();
        var info = new ProcessStartInfo("bash", [Path.Combine(TestEnvironment.Repo, "deploy", "lib", script), .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        await process.WaitForExitAsync(timeout.Token);
        TestContext.Progress.WriteLine($"{script} {string.Join(' ', args)}: exit {process.ExitCode} in {watch.Elapsed.TotalSeconds:F1} s {(await output).Trim()}");
        if (process.ExitCode != 0)
        {
            Assert.Fail($"{script} {string.Join(' ', args)} failed ({process.ExitCode}): {await error}");
        }
    }
}
