using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Billing.Usage.Tests;

/// <summary>Reserve → commit the actual amount → the rest goes back; release; expiry by the sweeper (the default catalog's Pro: 250).</summary>
[TestFixture]
public class Reserving_for_a_streaming_call
{
    private static UsageHost Host => Hosts.Default;

    private static async Task<string> ProUserAsync()
    {
        var user = UsageHost.NewUser();
        Assert.That(await Host.ApplyAsync(UsageHost.Activated(user)), Is.True);
        return user;
    }

    internal static async Task<(HttpStatusCode Status, JsonElement Body)> ReserveAsync(UsageHost host, string user, long quantity, string? key = null,
        int? ttlSeconds = null, string meter = "ai.generation")
    {
        var response = await host.Service.PostAsJsonAsync("/api/usage/reservations",
            new { userId = user, meter, quantity, idempotencyKey = key ?? UsageHost.NewKey(), ttlSeconds });
        return (response.StatusCode, await UsageHost.BodyAsync(response));
    }

    internal static async Task<(HttpStatusCode Status, JsonElement Body)> SettleAsync(UsageHost host, string id, string action, long? quantity = null)
    {
        var response = await host.Service.PostAsJsonAsync($"/api/usage/reservations/{id}/{action}", quantity is null ? (object)new { } : new { quantity });
        return (response.StatusCode, await UsageHost.BodyAsync(response));
    }

    [Test]
    public async Task A_reservation_counts_at_once_and_a_commit_gives_back_what_was_not_used()
    {
        var user = await ProUserAsync();
        var (status, reserved) = await ReserveAsync(Host, user, 10);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), reserved.ToString());
        Assert.That(reserved.GetProperty("remaining").GetInt64(), Is.EqualTo(240));
        Assert.That(reserved.GetProperty("source").GetString(), Is.EqualTo("quota"));
        Assert.That(reserved.GetProperty("expiresAt").GetDateTimeOffset(),
            Is.EqualTo(Host.Clock.GetUtcNow().AddSeconds(300)).Within(TimeSpan.FromSeconds(5)), "300 s by default");
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(10));

        var id = reserved.GetProperty("reservationId").GetString()!;
        var (committed, body) = await SettleAsync(Host, id, "commit", 4);
        Assert.That(committed, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That((body.GetProperty("committed").GetInt64(), body.GetProperty("released").GetInt64(), body.GetProperty("remaining").GetInt64()),
            Is.EqualTo((4L, 6L, 246L)));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(4));

        var (again, againBody) = await SettleAsync(Host, id, "commit", 9);
        Assert.That(again, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(againBody.ToString(), Is.EqualTo(body.ToString()), "a second commit answers the first");
        Assert.That((await SettleAsync(Host, id, "release")).Status, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(4));
    }

    [Test]
    public async Task A_release_gives_everything_back_once()
    {
        var user = await ProUserAsync();
        var (_, reserved) = await ReserveAsync(Host, user, 30);
        var id = reserved.GetProperty("reservationId").GetString()!;
        var (first, body) = await SettleAsync(Host, id, "release");
        var (second, again) = await SettleAsync(Host, id, "release");
        Assert.That((first, second), Is.EqualTo((HttpStatusCode.OK, HttpStatusCode.OK)));
        Assert.That(again.ToString(), Is.EqualTo(body.ToString()));
        Assert.That(body.GetProperty("released").GetInt64(), Is.EqualTo(30));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.Zero);
        var (commit, problem) = await SettleAsync(Host, id, "commit", 1);
        Assert.That(commit, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("reservation_released"));
    }

    [Test]
    public async Task The_same_key_returns_the_first_reservation()
    {
        var user = await ProUserAsync();
        var key = UsageHost.NewKey();
        var (_, first) = await ReserveAsync(Host, user, 5, key);
        var (_, second) = await ReserveAsync(Host, user, 5, key);
        Assert.That(second.ToString(), Is.EqualTo(first.ToString()));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(5));
        Assert.That((await ReserveAsync(Host, user, 6, key)).Status, Is.EqualTo(HttpStatusCode.Conflict));
    }

    [Test]
    public async Task A_reservation_the_window_cannot_cover_is_refused_and_holds_nothing()
    {
        var user = await ProUserAsync();
        var (status, problem) = await ReserveAsync(Host, user, 251);
        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("quota_exhausted"));
        Assert.That((await ReserveAsync(Host, UsageHost.NewUser(), 1)).Body.GetProperty("code").GetString(), Is.EqualTo("no_subscription"));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.Zero);
    }

    [Test]
    public async Task Bad_requests_are_400_and_unknown_ids_404()
    {
        var user = await ProUserAsync();
        Assert.That((await ReserveAsync(Host, user, 1, ttlSeconds: 3601)).Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await ReserveAsync(Host, user, 0)).Status, Is.EqualTo(HttpStatusCode.BadRequest));
        var (_, reserved) = await ReserveAsync(Host, user, 3);
        var id = reserved.GetProperty("reservationId").GetString()!;
        var (tooMuch, problem) = await SettleAsync(Host, id, "commit", 4);
        Assert.That(tooMuch, Is.EqualTo(HttpStatusCode.BadRequest), problem.ToString());
        Assert.That((await SettleAsync(Host, id, "commit")).Status, Is.EqualTo(HttpStatusCode.BadRequest), "no quantity");
        var (missing, notFound) = await SettleAsync(Host, Guid.NewGuid().ToString(), "commit", 1);
        Assert.That(missing, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(notFound.GetProperty("code").GetString(), Is.EqualTo("reservation_not_found"));
        Assert.That((await SettleAsync(Host, "not-a-guid", "release")).Status, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task An_expired_reservation_is_released_by_itself_and_cannot_be_committed()
    {
        var user = await ProUserAsync();
        var (_, reserved) = await ReserveAsync(Host, user, 20, ttlSeconds: 1);
        var id = reserved.GetProperty("reservationId").GetString()!;
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(20));
        await UsageHost.EventuallyAsync(async () => (await Host.MeterAsync(user)).GetProperty("used").GetInt64() == 0, TimeSpan.FromSeconds(10));
        var (status, problem) = await SettleAsync(Host, id, "commit", 5);
        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("reservation_expired"));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.Zero);
    }

    [Test]
    public async Task A_commit_after_the_expiry_but_before_the_sweeper_is_refused_and_releases()
    {
        var user = await ProUserAsync();
        var (_, reserved) = await ReserveAsync(Host, user, 7, ttlSeconds: 3600);
        var id = reserved.GetProperty("reservationId").GetString()!;
        // Billing's clock moves past the expiry; whoever comes first (this commit or the sweeper) releases it.
        Host.Clock.Advance(TimeSpan.FromHours(2));
        try
        {
            var (status, problem) = await SettleAsync(Host, id, "commit", 7);
            Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict));
            Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("reservation_expired"));
            Assert.That(await Host.ScalarAsync("SELECT used FROM usage_counters WHERE user_id = @user", new { user }), Is.Zero);
        }
        finally
        {
            Host.Clock.Reset();
        }
    }
}

/// <summary>Catalogs/overage-catalog.json's Pro: 1,000 generations a month.</summary>
[TestFixture]
public class Reserving_concurrently
{
    private static UsageHost Host => Hosts.Overage;

    [Test]
    public async Task Five_hundred_reservations_of_ten_half_committed_half_expired_leave_exactly_the_uncommitted_quota()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user, "pro"));
        var reservations = await Task.WhenAll(Enumerable.Range(0, 500).Select(i =>
            Reserving_for_a_streaming_call.ReserveAsync(Host, user, 10, ttlSeconds: i % 2 == 0 ? 3600 : 2)));
        var granted = reservations.Where(r => r.Status == HttpStatusCode.OK).ToList();
        // 1,000 / 10 at once; a few more when short-lived ones expire (and go back) while the burst is still running.
        Assert.That(granted, Has.Count.GreaterThanOrEqualTo(100));
        Assert.That(reservations.Count(r => r.Status == HttpStatusCode.PaymentRequired), Is.EqualTo(500 - granted.Count));

        var toCommit = granted.Where(r => r.Body.GetProperty("expiresAt").GetDateTimeOffset() > Host.Clock.GetUtcNow().AddMinutes(30)).ToList();
        var amounts = toCommit.Select(_ => (long)Random.Shared.Next(0, 11)).ToList();
        var commits = await Task.WhenAll(toCommit.Select((r, i) =>
            Reserving_for_a_streaming_call.SettleAsync(Host, r.Body.GetProperty("reservationId").GetString()!, "commit", amounts[i])));
        Assert.That(commits.All(c => c.Status == HttpStatusCode.OK), Is.True);

        await UsageHost.EventuallyAsync(async () =>
            await Host.ScalarAsync("SELECT count(*) FROM reservations WHERE user_id = @user AND status = 'active'", new { user }) == 0,
            TimeSpan.FromSeconds(15));
        var meter = await Host.MeterAsync(user);
        Assert.That(meter.GetProperty("remaining").GetInt64(), Is.EqualTo(1000 - amounts.Sum()));
    }
}
