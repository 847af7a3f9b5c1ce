using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Billing.Wallet.Tests;

/// <summary>An admin's corrections: tokens added for good or taken away, once per key, never below zero.</summary>
public sealed class Adjusting_a_balance
{
    private static WalletHost Host => Hosts.Packs;

    private static async Task<(HttpStatusCode Status, JsonElement Body)> AdjustAsync(string userId, long amount, string key, string reason = "support ticket 1234")
    {
        var response = await Host.Admin.PostAsJsonAsync($"/api/admin/wallet/{userId}/adjustments", new { amount, idempotencyKey = key, reason });
        return (response.StatusCode, await WalletHost.BodyAsync(response));
    }

    [Test]
    public async Task A_positive_adjustment_adds_tokens_once_and_announces_them()
    {
        var user = WalletHost.NewUser();
        var key = WalletHost.NewKey();

        var (first, entry) = await AdjustAsync(user, 300, key);
        var (again, replay) = await AdjustAsync(user, 300, key);

        Assert.That((first, again), Is.EqualTo((HttpStatusCode.OK, HttpStatusCode.OK)), entry.ToString());
        Assert.That(entry.GetProperty("kind").GetString(), Is.EqualTo("adjustment"));
        Assert.That(entry.GetProperty("amount").GetInt64(), Is.EqualTo(300));
        Assert.That(entry.GetProperty("reason").GetString(), Is.EqualTo("support ticket 1234"));
        Assert.That(replay.GetProperty("id").GetString(), Is.EqualTo(entry.GetProperty("id").GetString()));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(300));
        Assert.That(await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.TokensGranted,%' AND payload->>'userId' = @user AND payload->>'kind' = 'adjustment'",
            new { user }), Is.EqualTo(1));
    }

    [Test]
    public async Task A_negative_adjustment_takes_the_soonest_expiring_tokens_first_and_announces_it()
    {
        var user = WalletHost.NewUser();
        var now = Host.Clock.GetUtcNow();
        await Host.GrantAsync(user, 1000);                               // never expires
        await Host.GrantAsync(user, 200, expiresAt: now.AddDays(5));     // expires soonest

        var (status, entry) = await AdjustAsync(user, -250, WalletHost.NewKey(), reason: "granted twice by mistake");

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), entry.ToString());
        Assert.That((entry.GetProperty("amount").GetInt64(), entry.GetProperty("balanceAfter").GetInt64()), Is.EqualTo((-250L, 950L)));
        Assert.That(await Host.ScalarAsync("SELECT coalesce(sum(remaining), 0) FROM wallet_lots WHERE user_id = @user", new { user }), Is.Zero,
            "the 200 expiring tokens went first");
        Assert.That(await Host.ScalarAsync(
            "SELECT (payload->>'amount')::bigint FROM outbox WHERE message_type LIKE 'Billing.Contracts.TokensClawedBack,%' AND payload->>'userId' = @user",
            new { user }), Is.EqualTo(250));
        var verify = await WalletHost.BodyAsync(await Host.Admin.GetAsync("/api/admin/wallet/verify"));
        Assert.That(verify.GetProperty("ok").GetBoolean(), Is.True, verify.ToString());
    }

    [Test]
    public async Task Taking_away_more_than_the_balance_is_refused_and_changes_nothing()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 100);

        var key = WalletHost.NewKey();
        var (status, problem) = await AdjustAsync(user, -101, key);

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("insufficient_tokens"));
        Assert.That(problem.GetProperty("balance").GetInt64(), Is.EqualTo(100));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(100));
        Assert.That(await Host.TransactionsAsync(user), Has.Count.EqualTo(1));

        // The refusal used nothing, not even the key: the same correction goes through once the wallet holds enough.
        await Host.GrantAsync(user, 1);
        var (again, _) = await AdjustAsync(user, -101, key);
        Assert.That(again, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(0));
    }

    [Test]
    public async Task A_key_reused_for_another_adjustment_is_a_conflict()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 100);
        var key = WalletHost.NewKey();

        var (first, _) = await AdjustAsync(user, -10, key);
        var (other, problem) = await AdjustAsync(user, -11, key);
        var (positive, _) = await AdjustAsync(user, 10, key);

        Assert.That((first, other, positive), Is.EqualTo((HttpStatusCode.OK, HttpStatusCode.Conflict, HttpStatusCode.Conflict)));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("idempotency_conflict"));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(90));
    }

    [Test]
    public async Task Concurrent_negative_adjustments_never_take_the_balance_below_zero()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 100);

        var answers = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => AdjustAsync(user, -7, WalletHost.NewKey())));

        Assert.That(answers.Count(a => a.Status == HttpStatusCode.OK), Is.EqualTo(14));
        Assert.That(answers.Count(a => a.Status == HttpStatusCode.Conflict), Is.EqualTo(6));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(2));
    }

    [Test]
    public async Task The_request_s_correlation_id_goes_with_the_announcement()
    {
        var user = WalletHost.NewUser();
        var correlation = "support-" + Guid.NewGuid().ToString("N");
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/admin/wallet/{user}/adjustments")
        {
            Content = JsonContent.Create(new { amount = 5, idempotencyKey = WalletHost.NewKey(), reason = "goodwill" }),
        };
        request.Headers.Add("X-Correlation-Id", correlation);

        var response = await Host.Admin.SendAsync(request);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE correlation_id = @correlation AND payload->>'userId' = @user", new { correlation, user }), Is.EqualTo(1));
    }

    [TestCase("{\"amount\":0,\"idempotencyKey\":\"k\",\"reason\":\"r\"}", "amount")]
    [TestCase("{\"amount\":-1000000000001,\"idempotencyKey\":\"k\",\"reason\":\"r\"}", "amount")]
    [TestCase("{\"amount\":5,\"idempotencyKey\":\"k\"}", "reason")]
    [TestCase("{\"amount\":5,\"reason\":\"r\"}", "idempotencyKey")]
    public async Task A_bad_adjustment_is_a_400_naming_the_field(string json, string field)
    {
        var response = await Host.Admin.PostAsync($"/api/admin/wallet/{WalletHost.NewUser()}/adjustments", WalletHost.Json(json));
        var problem = await WalletHost.BodyAsync(response);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(problem.GetProperty("errors").TryGetProperty(field, out _), Is.True, problem.ToString());
    }
}
