using System.Net.Sockets;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;

namespace Billing.Client.Tests;

/// <summary>An AI backend asking "may this user spend one more?" through Billing.Client, on the default catalog (Pro: 250 a month).</summary>
[TestFixture]
[NonParallelizable]
public class Consuming_through_the_client
{
    [Test]
    public async Task A_subscribed_user_is_allowed_from_the_quota()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        var billing = Stack.Client();

        var result = await billing.ConsumeAsync(user, "ai.generation", idempotencyKey: "gen-" + user);

        Assert.That(result.Allowed, Is.True);
        Assert.That(result.Source, Is.EqualTo(ConsumeSources.Quota));
        Assert.That(result.Remaining, Is.EqualTo(249));
        Assert.That(result.ConsumptionId, Is.Not.Empty);
    }

    [Test]
    public async Task A_free_user_is_refused_with_NoSubscriptionException()
    {
        var user = Stack.NewUser();
        var billing = Stack.Client();

        var refused = Assert.ThrowsAsync<NoSubscriptionException>(() => billing.ConsumeAsync(user, "ai.generation"));

        Assert.That(refused!.Code, Is.EqualTo("no_subscription"));
        Assert.That(refused.Meter, Is.EqualTo("ai.generation"));
        var outcome = await billing.TryConsumeAsync(user, "ai.generation");
        Assert.That((outcome.Allowed, outcome.Refusal?.Code), Is.EqualTo((false, "no_subscription")));
    }

    [Test]
    public async Task A_used_up_quota_is_refused_with_QuotaExhaustedException_carrying_limit_and_reset()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        var billing = Stack.Client();
        var all = await billing.ConsumeAsync(user, "ai.generation", quantity: 250);
        Assert.That(all.Remaining, Is.Zero);

        var refused = Assert.ThrowsAsync<QuotaExhaustedException>(() => billing.ConsumeAsync(user, "ai.generation"));

        Assert.That(refused!.Limit, Is.EqualTo(250));
        Assert.That(refused.ResetsAt, Is.GreaterThan(DateTimeOffset.UtcNow.AddDays(20)));
        Assert.That(refused.Upgrade, Is.False, "Pro is the largest plan of the default catalog");
        Assert.That(refused, Is.InstanceOf<BillingRefusedException>());
    }

    [Test]
    public async Task The_same_idempotency_key_answers_the_first_answer_and_spends_once()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        var billing = Stack.Client();

        var first = await billing.ConsumeAsync(user, "ai.generation", idempotencyKey: "same-" + user);
        var again = await billing.ConsumeAsync(user, "ai.generation", idempotencyKey: "same-" + user);

        Assert.That(again, Is.EqualTo(first));
        Assert.That(await Stack.UsedAsync(user, "ai.generation"), Is.EqualTo(1));
    }

    [Test]
    public async Task A_retry_after_a_lost_answer_reuses_the_key_and_spends_once()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        // Billing spends on the first attempt, but its answer is lost on the way back (503): the client must retry.
        await using var proxy = new FlakyProxy(loseAnswer: attempt => attempt == 1);
        var billing = Stack.Client(baseAddress: proxy.Url);

        var result = await billing.ConsumeAsync(user, "ai.generation");

        Assert.That(result.Allowed, Is.True);
        Assert.That(result.Remaining, Is.EqualTo(249), "the retry got the first attempt's answer");
        var attempts = proxy.Attempts.ToArray();
        Assert.That(attempts, Has.Length.EqualTo(2));
        Assert.That(attempts[1].Body, Is.EqualTo(attempts[0].Body), "both attempts carry the same idempotency key");
        Assert.That(await Stack.UsedAsync(user, "ai.generation"), Is.EqualTo(1));
    }

    [Test]
    public async Task Billing_down_after_every_retry_is_a_BillingUnavailableException()
    {
        var user = Stack.NewUser();
        await using var proxy = new FlakyProxy(loseAnswer: _ => true);
        var billing = Stack.Client(o => o.MaxRetries = 2, baseAddress: proxy.Url);

        var failed = Assert.ThrowsAsync<BillingUnavailableException>(() => billing.ConsumeAsync(user, "ai.generation"));

        Assert.That(failed!.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        Assert.That(proxy.Attempts, Has.Count.EqualTo(3));
    }

    [Test]
    public async Task A_spend_whose_every_answer_was_lost_can_be_retried_once_more_with_the_key_the_exception_carries()
    {
        // Billing spent on the first attempt; every answer was lost. The caller retries later, with the key the client
        // had made up (the exception carries it): the spend counts once.
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        await using (var proxy = new FlakyProxy(loseAnswer: _ => true))
        {
            var failed = Assert.ThrowsAsync<BillingUnavailableException>(() => Stack.Client(o => o.MaxRetries = 1, baseAddress: proxy.Url)
                .ConsumeAsync(user, "ai.generation"));
            Assert.That(failed!.IdempotencyKey, Is.Not.Null.And.Not.Empty);

            var retried = await Stack.Client().ConsumeAsync(user, "ai.generation", idempotencyKey: failed.IdempotencyKey);

            Assert.That(retried.Remaining, Is.EqualTo(249), "the first attempt's answer");
        }
        Assert.That(await Stack.UsedAsync(user, "ai.generation"), Is.EqualTo(1));
    }

    [Test]
    public async Task The_trace_context_of_the_call_reaches_Billing()
    {
        var user = Stack.NewUser();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == BillingClientTelemetry.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
        };
        var spans = new List<Activity>();
        listener.ActivityStopped = spans.Add;
        ActivitySource.AddActivityListener(listener);
        await using var proxy = new FlakyProxy(loseAnswer: _ => false);
        var billing = Stack.Client(baseAddress: proxy.Url);

        using (var parent = new Activity("ai-generation").Start())
        {
            await billing.TryConsumeAsync(user, "ai.generation");
            var traceParent = proxy.Attempts.Single().TraceParent;
            Assert.That(traceParent, Does.Contain(parent.TraceId.ToHexString()), "W3C traceparent carries the caller's trace");
        }
        var span = spans.Single(s => s.OperationName == "billing consume");
        Assert.That(span.GetTagItem("billing.outcome"), Is.EqualTo("refused"));
        Assert.That(span.GetTagItem("billing.code"), Is.EqualTo("no_subscription"));
    }

    [Test]
    public async Task AddBillingClient_registers_a_client_that_uses_the_token_provider()
    {
        var asked = 0;
        using var services = new ServiceCollection()
            .AddBillingClient(o =>
            {
                o.BaseAddress = TestEnvironment.GatewayUrl;
                o.TokenProvider = _ =>
                {
                    Interlocked.Increment(ref asked);
                    return ValueTask.FromResult<string?>(Tokens.Service());
                };
            }).Services.BuildServiceProvider();
        var billing = services.GetRequiredService<BillingClient>();

        var outcome = await billing.TryConsumeAsync(Stack.NewUser(), "ai.generation");

        Assert.That(outcome.Refusal?.Code, Is.EqualTo("no_subscription"));
        Assert.That(asked, Is.EqualTo(1));
    }

    [Test]
    public async Task Entitlements_of_a_user_show_the_plan_features_and_meters()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        var billing = Stack.Client();

        var entitlements = await billing.GetEntitlementsAsync(user);

        Assert.That(entitlements.PlanId, Is.EqualTo("pro"));
        Assert.That(entitlements.Has("ai_access"), Is.True);
        Assert.That(entitlements.Meters.Single().Limit, Is.EqualTo(250));
        Assert.That((entitlements.Access, entitlements.Suspended, entitlements.Meters.Single().Overage), Is.EqualTo(("full", false, "block")));
    }

    [Test]
    public async Task Usage_with_the_users_own_token_shows_used_and_remaining()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        var billing = Stack.Client();
        await billing.ConsumeAsync(user, "ai.generation", quantity: 3);

        var usage = await billing.GetUsageAsync(Tokens.User(user));

        var meter = usage.Meters.Single(m => m.Meter == "ai.generation");
        Assert.That((meter.Used, meter.Remaining, meter.Limit), Is.EqualTo((3L, 247L, 250L)));
        Assert.That(meter.ResetsAt, Is.Not.Null);
    }

    [Test]
    public void A_call_without_the_usage_scope_is_a_BillingApiException_403()
    {
        var billing = Stack.Client(o => o.TokenProvider = _ => ValueTask.FromResult<string?>(Tokens.User("not-a-service")));

        var failed = Assert.ThrowsAsync<BillingApiException>(() => billing.ConsumeAsync(Stack.NewUser(), "ai.generation"));

        Assert.That(failed!.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(failed, Is.Not.InstanceOf<BillingUnavailableException>());
    }
}

/// <summary>A 429 (or 503) with Retry-After is retried when the server asks, not on the client's short back-off.</summary>
[TestFixture]
public class Retrying_when_Billing_says_when
{
    [Test]
    public async Task A_429_with_Retry_After_is_retried_after_the_wait_it_names()
    {
        using var listener = new HttpListener();
        var port = new TcpListener(IPAddress.Loopback, 0);
        port.Start();
        var url = $"http://127.0.0.1:{((IPEndPoint)port.LocalEndpoint).Port}/";
        port.Stop();
        listener.Prefixes.Add(url);
        listener.Start();
        var attempts = new List<DateTimeOffset>();
        var serving = Task.Run(async () =>
        {
            for (var i = 0; i < 2; i++)
            {
                var context = await listener.GetContextAsync();
                attempts.Add(DateTimeOffset.UtcNow);
                if (i == 0)
                {
                    context.Response.StatusCode = 429;
                    context.Response.Headers["Retry-After"] = "1";
                }
                else
                {
                    context.Response.ContentType = "application/json";
                    var body = """{"allowed":true,"source":"quota","remaining":9,"tokenBalance":0,"consumptionId":"c1"}"""u8.ToArray();
                    await context.Response.OutputStream.WriteAsync(body);
                }
                context.Response.Close();
            }
        });

        var result = await Stack.Client(o => o.RetryDelay = TimeSpan.FromMilliseconds(10), baseAddress: new Uri(url))
            .ConsumeAsync("u-retry-after", "ai.generation");
        await serving;

        Assert.That(result.Remaining, Is.EqualTo(9));
        Assert.That(attempts, Has.Count.EqualTo(2));
        Assert.That(attempts[1] - attempts[0], Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(900)), "waited the second Retry-After named");
    }
}
