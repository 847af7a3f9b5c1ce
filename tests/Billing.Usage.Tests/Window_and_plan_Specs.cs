using System.Net;
using System.Text.Json;
using Billing.Contracts;

namespace Billing.Usage.Tests;

/// <summary>Catalogs/test-catalog.json: a free daily allowance, an unlimited meter, a period window and a larger plan.</summary>
[TestFixture]
public class Windows_and_plans_of_a_richer_catalog
{
    private static UsageHost Host => Hosts.Test;

    [Test]
    public async Task A_free_daily_allowance_starts_again_after_midnight_UTC()
    {
        var user = UsageHost.NewUser();
        for (var i = 0; i < 3; i++)
        {
            Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "chat.message")).Status, Is.EqualTo(HttpStatusCode.OK));
        }
        var (refused, problem) = await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "chat.message");
        Assert.That(refused, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("quota_exhausted"));
        Assert.That(problem.GetProperty("upgrade").GetBoolean(), Is.True, "Pro has unlimited chat");
        var resetsAt = problem.GetProperty("resetsAt").GetDateTimeOffset();
        Assert.That(resetsAt, Is.EqualTo(new DateTimeOffset(Host.Clock.GetUtcNow().UtcDateTime.Date.AddDays(1), TimeSpan.Zero)));

        Host.Clock.Advance(resetsAt - Host.Clock.GetUtcNow());
        try
        {
            var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "chat.message");
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That(body.GetProperty("remaining").GetInt64(), Is.EqualTo(2));
        }
        finally
        {
            Host.Clock.Reset();
        }
    }

    [Test]
    public async Task A_commit_after_midnight_counts_in_the_day_it_was_reserved_in()
    {
        var user = UsageHost.NewUser();
        var midnight = new DateTimeOffset(Host.Clock.GetUtcNow().UtcDateTime.Date.AddDays(1), TimeSpan.Zero);
        Host.Clock.Advance(midnight.AddSeconds(-30) - Host.Clock.GetUtcNow());
        try
        {
            var (reservedStatus, reserved) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 2, meter: "chat.message");
            Assert.That(reservedStatus, Is.EqualTo(HttpStatusCode.OK), reserved.ToString());
            Assert.That(reserved.GetProperty("remaining").GetInt64(), Is.EqualTo(1), "3 a day, 2 held");

            Host.Clock.Advance(TimeSpan.FromSeconds(60)); // the stream ends after midnight
            var (status, body) = await Reserving_for_a_streaming_call.SettleAsync(Host, reserved.GetProperty("reservationId").GetString()!, "commit", 1);

            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That((body.GetProperty("committed").GetInt64(), body.GetProperty("remaining").GetInt64()), Is.EqualTo((1L, 2L)),
                "counted in the day it was reserved in; remaining is that day's");
            var today = await Host.MeterAsync(user, "chat.message");
            Assert.That((today.GetProperty("used").GetInt64(), today.GetProperty("remaining").GetInt64()), Is.EqualTo((0L, 3L)), "the new day is untouched");
        }
        finally
        {
            Host.Clock.Reset();
        }
    }

    [Test]
    public async Task A_null_limit_is_unlimited_but_still_counted()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user, "pro"));
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 1000, meter: "chat.message");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("source").GetString(), Is.EqualTo("unlimited"));

        var meter = await Host.MeterAsync(user, "chat.message");
        Assert.That(meter.GetProperty("unlimited").GetBoolean(), Is.True);
        Assert.That(meter.GetProperty("limit").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(meter.GetProperty("remaining").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(meter.GetProperty("used").GetInt64(), Is.EqualTo(1000));
    }

    [Test]
    public async Task An_upgrade_raises_the_limit_at_once_and_what_was_used_stays_used()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(activated);
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 10)).Status, Is.EqualTo(HttpStatusCode.OK));
        var (refused, problem) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(refused, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("upgrade").GetBoolean(), Is.True);

        await Host.ApplyAsync(UsageHost.Updated(activated, "active", sequence: 2, planId: "max"));
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("remaining").GetInt64(), Is.EqualTo(89));
    }

    /// <summary>The user's QuotaLow/QuotaExhausted messages in the outbox as "Type:limit …" (by limit), once <paramref name="count"/> are there.</summary>
    private static async Task<string?> AnnouncedAsync(string user, int count)
    {
        await Wait.UntilAsync(async () => await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.Quota%' AND payload->>'userId' = @user", new { user }) >= count,
            what: $"{count} quota announcements in the outbox");
        return await Host.ScalarTextAsync(
            """
            SELECT string_agg(split_part(message_type, ',', 1) || ':' || (payload->>'limit'), ' ' ORDER BY (payload->>'limit')::bigint, message_type)
            FROM outbox WHERE message_type LIKE 'Billing.Contracts.Quota%' AND payload->>'userId' = @user
            """, new { user });
    }

    [Test]
    public async Task After_an_upgrade_the_new_limits_thresholds_are_announced_in_the_same_window()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(activated);
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 10)).Status, Is.EqualTo(HttpStatusCode.OK)); // 10 of Pro's 10

        await Host.ApplyAsync(UsageHost.Updated(activated, "active", sequence: 2, planId: "max"));
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 70)).Status, Is.EqualTo(HttpStatusCode.OK)); // 80 of Max's 100
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 20)).Status, Is.EqualTo(HttpStatusCode.OK)); // 100 of 100

        Assert.That(await AnnouncedAsync(user, 4), Is.EqualTo(
            "Billing.Contracts.QuotaExhausted:10 Billing.Contracts.QuotaLow:10 Billing.Contracts.QuotaExhausted:100 Billing.Contracts.QuotaLow:100"));
    }

    [Test]
    public async Task A_downgrade_to_a_limit_already_used_up_announces_it_for_the_new_limit()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "max");
        await Host.ApplyAsync(activated);
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 50)).Status, Is.EqualTo(HttpStatusCode.OK)); // 50 of Max's 100

        // The period ends and the downgrade to Pro (10) applies in the middle of the month's window: nothing is left.
        await Host.ApplyAsync(UsageHost.Updated(activated, "active", sequence: 2, planId: "pro"));
        Assert.That(await AnnouncedAsync(user, 2), Is.EqualTo("Billing.Contracts.QuotaExhausted:10 Billing.Contracts.QuotaLow:10"));
    }

    [Test]
    public async Task A_period_window_resets_when_the_renewal_is_paid()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(activated);
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 5, meter: "image.render")).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "image.render")).Status, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That((await Host.MeterAsync(user, "image.render")).GetProperty("resetsAt").GetDateTimeOffset(),
            Is.EqualTo(activated.CurrentPeriodEnd).Within(TimeSpan.FromMilliseconds(1)));

        // The renewal's invoice, paid early: the new period starts now.
        var now = Host.Clock.GetUtcNow();
        await Host.ApplyAsync(UsageHost.Paid(activated, now.AddMinutes(-1), now.AddMonths(1), now));
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "image.render");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("remaining").GetInt64(), Is.EqualTo(4));
    }

    [Test]
    public async Task Entitlements_list_the_plans_features_limits_and_meters()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user, "pro"));
        using var client = Host.UserClient(user);
        var body = await UsageHost.BodyAsync(await client.GetAsync("/api/entitlements/me"));
        Assert.That(body.GetProperty("planId").GetString(), Is.EqualTo("pro"));
        Assert.That(body.GetProperty("limits").GetProperty("projects").GetInt64(), Is.EqualTo(10));
        Assert.That(body.GetProperty("meters").EnumerateArray().Select(m => m.GetProperty("meter").GetString()),
            Is.EquivalentTo(new[] { "ai.generation", "chat.message", "image.render" }));
    }

    [Test]
    public async Task The_history_sums_allowed_usage_per_day_and_meter()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user, "pro"));
        await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 2);
        await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 3);
        await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 50); // refused: not counted
        await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "chat.message");

        using var client = Host.UserClient(user);
        var response = await client.GetAsync("/api/usage/me/history?granularity=day");
        var body = await UsageHost.BodyAsync(response);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var today = Host.Clock.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        var items = body.GetProperty("items").EnumerateArray()
            .Select(i => (i.GetProperty("date").GetString(), i.GetProperty("meter").GetString(), i.GetProperty("quantity").GetInt64())).ToList();
        Assert.That(items, Is.EqualTo(new[] { (today, "ai.generation", 5L), (today, "chat.message", 1L) }));
    }
}
