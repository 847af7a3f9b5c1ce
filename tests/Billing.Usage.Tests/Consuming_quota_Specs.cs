using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Billing.Contracts;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace Billing.Usage.Tests;

/// <summary>The first seed's Pro plan (deploy/catalogs/default.json): 250 generations a month.</summary>
[TestFixture]
public class Consuming_the_monthly_generations
{
    private static UsageHost Host => Hosts.Default;

    private static async Task<string> ProUserAsync()
    {
        var user = UsageHost.NewUser();
        Assert.That(await Host.ApplyAsync(UsageHost.Activated(user)), Is.True);
        return user;
    }

    [Test]
    public async Task A_consume_a_moment_before_Stripes_start_of_the_subscription_counts_in_its_first_month()
    {
        // Stripe stamped the start a second ahead of our clock (two clocks; the CI saw it with the simulator's).
        var user = UsageHost.NewUser();
        var start = new DateTimeOffset(Host.Clock.GetUtcNow().UtcDateTime.AddSeconds(1).Ticks / TimeSpan.TicksPerSecond * TimeSpan.TicksPerSecond, TimeSpan.Zero);
        await Host.ApplyAsync(UsageHost.Activated(user, "pro", startedAt: start));

        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("remaining").GetInt64(), Is.EqualTo(249));

        Host.Clock.Advance(TimeSpan.FromSeconds(2));
        try
        {
            var meter = await Host.MeterAsync(user);
            Assert.That(meter.GetProperty("used").GetInt64(), Is.EqualTo(1), "the spend is in the window /me shows once the start has passed");
            Assert.That(meter.GetProperty("resetsAt").GetDateTimeOffset(), Is.EqualTo(start.AddMonths(1)));
        }
        finally
        {
            Host.Clock.Reset();
        }
    }

    [Test]
    public async Task Should_show_250_remaining_after_SubscriptionActivated_arrives_on_the_bus()
    {
        var user = UsageHost.NewUser();
        var bus = Host.Services.GetRequiredService<IBus>();
        await bus.Publish(UsageHost.Activated(user));
        await UsageHost.EventuallyAsync(async () => (await Host.MeterAsync(user)).GetProperty("limit").GetInt64() == 250);

        var meter = await Host.MeterAsync(user);
        Assert.That(meter.GetProperty("limit").GetInt64(), Is.EqualTo(250));
        Assert.That(meter.GetProperty("used").GetInt64(), Is.Zero);
        Assert.That(meter.GetProperty("remaining").GetInt64(), Is.EqualTo(250));
        Assert.That(meter.GetProperty("window").GetString(), Is.EqualTo("month"));
        Assert.That(meter.GetProperty("unlimited").GetBoolean(), Is.False);
    }

    [Test]
    public async Task Should_allow_250_and_refuse_the_251st_with_quota_exhausted()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user);
        await Host.ApplyAsync(activated);
        for (var i = 0; i < 250; i++)
        {
            var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey());
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That(body.GetProperty("remaining").GetInt64(), Is.EqualTo(249 - i));
        }

        var (refused, problem) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        TestContext.Out.WriteLine(problem.ToString());
        Assert.That(refused, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("quota_exhausted"));
        Assert.That(problem.GetProperty("meter").GetString(), Is.EqualTo("ai.generation"));
        Assert.That(problem.GetProperty("limit").GetInt64(), Is.EqualTo(250));
        Assert.That(problem.GetProperty("upgrade").GetBoolean(), Is.False, "Pro is the largest plan of the default catalog");
        Assert.That(problem.GetProperty("resetsAt").GetDateTimeOffset(), Is.EqualTo(activated.StartedAt.AddMonths(1)).Within(TimeSpan.FromMilliseconds(1)));

        var meter = await Host.MeterAsync(user);
        Assert.That(meter.GetProperty("used").GetInt64(), Is.EqualTo(250));
        Assert.That(meter.GetProperty("remaining").GetInt64(), Is.Zero);
    }

    [Test]
    public async Task Should_announce_quota_low_and_exhausted_once_each_in_the_outbox()
    {
        var user = await ProUserAsync();
        for (var i = 0; i < 251; i++)
        {
            await Host.ConsumeAsync(user, UsageHost.NewKey());
        }
        // The spends' own transactions wrote the announcements; the announcer moves them to the outbox right after.
        await Wait.UntilAsync(async () => await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.Quota%' AND payload->>'userId' = @user", new { user }) >= 2,
            what: "QuotaLow and QuotaExhausted in the outbox");
        var low = await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.QuotaLow,%' AND payload->>'userId' = @user", new { user });
        var exhausted = await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.QuotaExhausted,%' AND payload->>'userId' = @user", new { user });
        await Wait.UntilAsync(async () => await Host.ScalarAsync(
            "SELECT count(*) FROM usage_announcements WHERE user_id = @user AND published_at IS NULL", new { user }) == 0,
            what: "the announcements marked published");
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM usage_announcements WHERE user_id = @user", new { user }), Is.EqualTo(2),
            "published announcements stay for the rest of their window");
        var usedAtLow = await Host.ScalarAsync(
            "SELECT (payload->>'used')::bigint FROM outbox WHERE message_type LIKE 'Billing.Contracts.QuotaLow,%' AND payload->>'userId' = @user", new { user });
        Assert.That((low, exhausted, usedAtLow), Is.EqualTo((1L, 1L, 200L)));
    }

    [Test]
    public async Task An_announcement_left_behind_by_a_crash_is_published_once_by_the_periodic_run()
    {
        // As if the service died after a spend's commit and before it woke the announcer: the row alone is enough.
        var user = UsageHost.NewUser();
        var start = new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
        await Host.ScalarAsync(
            """
            INSERT INTO usage_announcements (user_id, meter, window_start, window_end, kind, quota_limit, used, occurred_at)
            VALUES (@user, 'ai.generation', @start, @end, 'low', 250, 200, now()), (@user, 'ai.generation', @start, @end, 'exhausted', 250, 250, now())
            ON CONFLICT DO NOTHING RETURNING 0::bigint
            """, new { user, start, end = start.AddMonths(1) });

        await Wait.UntilAsync(async () => await Host.ScalarAsync(
            "SELECT count(*) FROM usage_announcements WHERE user_id = @user AND published_at IS NULL", new { user }) == 0,
            what: "the announcer to take the rows");
        var messages = await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.Quota%' AND payload->>'userId' = @user", new { user });
        var used = await Host.ScalarAsync(
            "SELECT (payload->>'used')::bigint FROM outbox WHERE message_type LIKE 'Billing.Contracts.QuotaLow,%' AND payload->>'userId' = @user", new { user });
        Assert.That((messages, used), Is.EqualTo((2L, 200L)));
    }

    [Test]
    public async Task A_threshold_crossed_again_in_the_same_window_is_not_announced_again_even_after_the_outbox_forgot_it()
    {
        var user = await ProUserAsync();
        var (_, reserved) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 210); // 210 of 250: QuotaLow
        await Wait.UntilAsync(async () => await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.QuotaLow,%' AND payload->>'userId' = @user", new { user }) == 1,
            what: "QuotaLow in the outbox");
        await Reserving_for_a_streaming_call.SettleAsync(Host, reserved.GetProperty("reservationId").GetString()!, "release");
        // Days later the sent message has left the outbox (it keeps sent rows for 7 days); the window is the same month.
        await Host.ScalarAsync("DELETE FROM outbox WHERE payload->>'userId' = @user RETURNING 0::bigint", new { user });

        for (var i = 0; i < 201; i++)
        {
            await Host.ConsumeAsync(user, UsageHost.NewKey());
        }
        await Task.Delay(TimeSpan.FromSeconds(3)); // more than the announcer's interval
        Assert.That(await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.QuotaLow,%' AND payload->>'userId' = @user", new { user }), Is.Zero,
            "QuotaLow is published once per window");
    }

    [Test]
    public async Task A_retried_key_returns_the_first_answer_and_spends_nothing()
    {
        var user = await ProUserAsync();
        var key = UsageHost.NewKey();
        var (first, firstBody) = await Host.ConsumeAsync(user, key, quantity: 3);
        var (again, againBody) = await Host.ConsumeAsync(user, key, quantity: 3);

        TestContext.Out.WriteLine(firstBody.ToString());
        Assert.That((first, again), Is.EqualTo((HttpStatusCode.OK, HttpStatusCode.OK)));
        Assert.That(againBody.ToString(), Is.EqualTo(firstBody.ToString()));
        Assert.That(firstBody.GetProperty("source").GetString(), Is.EqualTo("quota"));
        Assert.That(firstBody.GetProperty("remaining").GetInt64(), Is.EqualTo(247));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(3));
    }

    [Test]
    public async Task A_retried_refusal_stays_the_same_refusal()
    {
        var user = UsageHost.NewUser();
        var key = UsageHost.NewKey();
        var (first, firstBody) = await Host.ConsumeAsync(user, key);
        await Host.ApplyAsync(UsageHost.Activated(user));
        var (again, againBody) = await Host.ConsumeAsync(user, key);
        Assert.That((first, again), Is.EqualTo((HttpStatusCode.PaymentRequired, HttpStatusCode.PaymentRequired)));
        Assert.That(againBody.GetProperty("code").GetString(), Is.EqualTo(firstBody.GetProperty("code").GetString()));
        Assert.That(againBody.GetProperty("code").GetString(), Is.EqualTo("no_subscription"));
    }

    [Test]
    public async Task The_same_key_with_another_quantity_is_a_conflict()
    {
        var user = await ProUserAsync();
        var key = UsageHost.NewKey();
        await Host.ConsumeAsync(user, key, quantity: 1);
        var (status, problem) = await Host.ConsumeAsync(user, key, quantity: 2);
        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("idempotency_conflict"));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(1));
    }

    [Test]
    public async Task A_thousand_concurrent_consumes_against_250_remaining_spend_exactly_250()
    {
        var user = await ProUserAsync();
        var watch = Stopwatch.StartNew();
        var results = await Task.WhenAll(Enumerable.Range(0, 1000).Select(_ => Host.ConsumeAsync(user, UsageHost.NewKey())));
        watch.Stop();
        TestContext.Out.WriteLine($"1,000 concurrent consumes took {watch.ElapsedMilliseconds} ms");

        Assert.That(results.Count(r => r.Status == HttpStatusCode.OK), Is.EqualTo(250));
        Assert.That(results.Count(r => r.Status == HttpStatusCode.PaymentRequired), Is.EqualTo(750));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(250));
        Assert.That(results.Where(r => r.Status == HttpStatusCode.OK).Select(r => r.Body.GetProperty("remaining").GetInt64()).Distinct().Count(),
            Is.EqualTo(250), "every allowed spend saw its own remaining");
    }

    [Test]
    public async Task Every_request_sent_twice_under_its_key_still_spends_exactly_250()
    {
        var user = await ProUserAsync();
        var keys = Enumerable.Range(0, 500).Select(_ => UsageHost.NewKey()).ToList();
        var watch = Stopwatch.StartNew();
        var results = await Task.WhenAll(keys.Concat(keys).OrderBy(_ => Random.Shared.Next())
            .Select(async key => (Key: key, Answer: await Host.ConsumeAsync(user, key))));
        watch.Stop();
        TestContext.Out.WriteLine($"1,000 concurrent consumes (500 keys, each twice) took {watch.ElapsedMilliseconds} ms");

        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(250));
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM consumptions WHERE user_id = @user AND allowed", new { user }), Is.EqualTo(250));
        foreach (var pair in results.GroupBy(r => r.Key))
        {
            var answers = pair.Select(p => (p.Answer.Status, Body: p.Answer.Body.ToString())).Distinct().ToList();
            Assert.That(answers.Select(a => a.Status).Distinct().Count(), Is.EqualTo(1), $"key {pair.Key} got two different answers");
            if (answers[0].Status == HttpStatusCode.OK)
            {
                Assert.That(answers, Has.Count.EqualTo(1), "both deliveries of an allowed key get the same body");
            }
        }
        Assert.That(results.Count(r => r.Answer.Status == HttpStatusCode.OK), Is.EqualTo(500), "250 keys allowed, each answered twice");
    }

    [Test]
    public async Task A_member_of_an_unlimited_group_is_allowed_without_a_subscription()
    {
        var user = UsageHost.NewUser();
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey(), groups: ["ai-unlimited"]);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("source").GetString(), Is.EqualTo("unlimited"));
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM consumptions WHERE user_id = @user AND allowed", new { user }), Is.EqualTo(1),
            "recorded all the same");
    }

    [Test]
    public async Task Groups_seen_on_the_users_own_token_are_remembered()
    {
        var user = UsageHost.NewUser();
        using (var client = Host.UserClient(user, ["ai-unlimited"]))
        {
            var me = await UsageHost.BodyAsync(await client.GetAsync("/api/usage/me"));
            Assert.That(me.GetProperty("meters")[0].GetProperty("unlimited").GetBoolean(), Is.True);
        }
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("source").GetString(), Is.EqualTo("unlimited"));
    }

    [Test]
    public async Task The_token_balance_comes_from_the_wallets_events()
    {
        var user = await ProUserAsync();
        var handler = Host.Services.GetRequiredService<Billing.Usage.Api.Subscribers.SubscriberEventsHandler>();
        var t = DateTimeOffset.UtcNow;
        await handler.HandleBalanceAsync(Guid.NewGuid(), "TokensGrantedConsumer", user, 100_000, t, default);
        await handler.HandleBalanceAsync(Guid.NewGuid(), "TokensGrantedConsumer", user, 50, t.AddMinutes(-1), default); // older: ignored
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("tokenBalance").GetInt64(), Is.EqualTo(100_000));
    }
}
