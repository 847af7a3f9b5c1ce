using System.Globalization;
using System.Net;
using Billing.Usage.Api.Spending;
using Microsoft.Extensions.DependencyInjection;

namespace Billing.Usage.Tests;

/// <summary>
/// Retention (Usage:RetentionDays, 35): consumptions older than that roll up into daily totals (the history still shows
/// them), settled reservations, counters of windows long over and reported overage go; nothing still owed goes.
/// </summary>
[TestFixture]
[NonParallelizable]
public class Retiring_old_usage
{
    private static UsageHost Host => Hosts.Default;

    private static Task Sql(string sql, object args) => Host.ScalarAsync(sql, args);

    [Test]
    public async Task Old_consumptions_roll_up_into_daily_totals_and_nothing_unfinished_is_removed()
    {
        var user = UsageHost.NewUser();
        Assert.That(await Host.ApplyAsync(UsageHost.Activated(user)), Is.True);
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 3)).Status, Is.EqualTo(HttpStatusCode.OK));
        var today = Host.Clock.GetUtcNow().UtcDateTime.Date;
        var day40 = today.AddDays(-40).AddHours(13);
        var day50 = today.AddDays(-50).AddHours(2);

        const string consumption = """
            INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, created_at)
            VALUES (@key, gen_random_uuid(), @user, 'ai.generation', @quantity, @allowed, 'quota', @status, '{}', @at)
            """;
        await Sql(consumption, new { key = user + "-a", user, quantity = 4L, allowed = true, status = 200, at = day40 });
        await Sql(consumption, new { key = user + "-b", user, quantity = 5L, allowed = true, status = 200, at = day40.AddHours(1) });
        await Sql(consumption, new { key = user + "-c", user, quantity = 2L, allowed = false, status = 402, at = day40 });
        await Sql(consumption, new { key = user + "-d", user, quantity = 7L, allowed = true, status = 200, at = day50 });
        await Sql(consumption, new { key = user + "-claim", user, quantity = 1L, allowed = false, status = 0, at = day50 });

        const string reservation = """
            INSERT INTO reservations (reservation_id, idempotency_key, user_id, meter, quantity, status, status_code, answer, counted, quota_part,
                                      expires_at, created_at, settled_at, tokens, tokens_to_return, return_due)
            VALUES (gen_random_uuid(), @key, @user, 'api.credit', 2, @status, 200, '{}', false, 0, @expires, @at, @at, @tokens, @tokens, @due)
            """;
        await Sql(reservation, new { key = user + "-r1", user, status = "committed", at = day40, expires = day40, tokens = 0L, due = false });
        await Sql(reservation, new { key = user + "-r2", user, status = "released", at = day40, expires = day40, tokens = 20L, due = true });
        await Sql(reservation, new { key = user + "-r3", user, status = "active", at = day40, expires = today.AddDays(2), tokens = 0L, due = false });
        const string counter = """
            INSERT INTO usage_counters (user_id, meter, window_start, window_end, used) VALUES (@user, 'ai.generation', @start, @end, 9)
            """;
        await Sql(counter, new { user, start = day50, end = day40 });
        // A subscriber whose last period was never renewed keeps it as the current window: its counter must stay.
        var unrenewed = UsageHost.NewUser();
        await Sql(counter, new { user = unrenewed, start = day50, end = day40 });

        var retention = Host.Services.GetRequiredService<UsageRetention>();
        Assert.That(retention.RetentionDays, Is.EqualTo(35));
        var first = await retention.RunOnceAsync(CancellationToken.None);
        Assert.That(first!.Consumptions, Is.GreaterThanOrEqualTo(4));

        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM consumptions WHERE user_id = @user", new { user }), Is.EqualTo(2),
            "today's consume and the unfinished claim stay");
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM consumptions WHERE user_id = @user AND status_code = 0", new { user }), Is.EqualTo(1));
        Assert.That(await Host.ScalarAsync("SELECT quantity FROM usage_daily WHERE user_id = @user AND day = @day", new { user, day = DateOnly.FromDateTime(day40) }),
            Is.EqualTo(9), "4 + 5 allowed that day; the refused 2 never counted");
        Assert.That(await Host.ScalarAsync("SELECT quantity FROM usage_daily WHERE user_id = @user AND day = @day", new { user, day = DateOnly.FromDateTime(day50) }),
            Is.EqualTo(7));
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM reservations WHERE user_id = @user", new { user }), Is.EqualTo(2),
            "the settled one goes; the one still owing tokens back and the active one stay");
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM reservations WHERE user_id = @user AND status = 'committed'", new { user }), Is.Zero);
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM usage_counters WHERE user_id = @user", new { user }), Is.EqualTo(1),
            "the current window's counter stays, the replaced old one goes");
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM usage_counters WHERE user_id = @unrenewed", new { unrenewed }), Is.EqualTo(1),
            "a user's latest window of a meter is never removed");

        using var client = Host.UserClient(user);
        var from = today.AddDays(-60).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
        var to = today.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
        var history = await UsageHost.BodyAsync(await client.GetAsync($"/api/usage/me/history?from={from}&to={to}"));
        var items = history.GetProperty("items").EnumerateArray()
            .Select(i => (i.GetProperty("date").GetString(), i.GetProperty("quantity").GetInt64())).ToList();
        Assert.That(items, Is.EqualTo(new[]
        {
            (day50.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), 7L),
            (day40.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), 9L),
            (to, 3L),
        }), history.ToString());

        var again = await retention.RunOnceAsync(CancellationToken.None);
        Assert.That(await Host.ScalarAsync("SELECT quantity FROM usage_daily WHERE user_id = @user AND day = @day", new { user, day = DateOnly.FromDateTime(day40) }),
            Is.EqualTo(9), "a second pass changes nothing");
        Assert.That(again, Is.Not.Null);
    }
}
