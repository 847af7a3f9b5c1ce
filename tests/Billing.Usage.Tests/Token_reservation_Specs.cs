using System.Net;
using System.Text.Json;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;

namespace Billing.Usage.Tests;

/// <summary>
/// Catalogs/overage-catalog.json: <c>api.credit</c> pays with purchased tokens (10 a unit) past Pro's 5 a month, and a
/// reservation the window cannot cover is paid the same way: Wallet debits the whole reservation under
/// <c>reservation:&lt;id&gt;</c>, and what the commit does not use goes back through <c>/internal/wallet/returns</c>.
/// Wallet is stubbed here (WireMock); the end-to-end tests run the same flow against the real Wallet.
/// </summary>
[TestFixture]
[NonParallelizable]
public class Reserving_with_purchased_tokens
{
    private static UsageHost Host => Hosts.Overage;

    private static void WalletAnswers(string user, string path, int status, object body, int priority = 5) =>
        Host.Stubs.Given(Request.Create().WithPath(path).UsingPost().WithBody(b => b != null && b.Contains(user)))
            .AtPriority(priority)
            .RespondWith(Response.Create().WithStatusCode(status).WithHeader("Content-Type", status == 200 ? "application/json" : "application/problem+json")
                .WithBodyAsJson(body));

    private static List<JsonElement> CallsOf(string user, string path) =>
        Host.Stubs.LogEntries.Where(e => e.RequestMessage.Path == path && (e.RequestMessage.Body ?? "").Contains(user))
            .Select(e => JsonDocument.Parse(e.RequestMessage.Body!).RootElement.Clone()).ToList();

    private static async Task<string> ProUserWithFourCreditsUsedAsync()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user, "pro"));
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 4, meter: "api.credit")).Status, Is.EqualTo(HttpStatusCode.OK));
        return user;
    }

    private static Task<(HttpStatusCode Status, JsonElement Body)> ReserveAsync(string user, long quantity, string key, int? ttlSeconds = null) =>
        Reserving_for_a_streaming_call.ReserveAsync(Host, user, quantity, key, ttlSeconds, meter: "api.credit");

    private static Task<long> ReturnDueAsync(string id) =>
        Host.ScalarAsync("SELECT count(*) FROM reservations WHERE reservation_id = @id::uuid AND return_due", new { id });

    private static async Task<long> TokenBalanceShownAsync(string user)
    {
        using var client = Host.UserClient(user);
        var view = await UsageHost.BodyAsync(await client.GetAsync("/api/usage/me"));
        return view.GetProperty("tokens").GetProperty("balance").GetInt64();
    }

    [Test]
    public async Task A_reservation_costing_more_tokens_than_one_debit_may_move_is_402_insufficient_tokens_without_asking_Wallet()
    {
        var user = UsageHost.NewUser();
        WalletAnswers(user, "/internal/wallet/debit", 400, new { code = "validation_failed", status = 400, title = "The request is not valid." });
        var (status, problem) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 1_000_000_000, UsageHost.NewKey(), null, meter: "video.second");
        Assert.That((status, problem.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.PaymentRequired, "insufficient_tokens")), problem.ToString());
        Assert.That(problem.GetProperty("requested").GetInt64(), Is.EqualTo(5_000_000_000_000));
        Assert.That(CallsOf(user, "/internal/wallet/debit"), Is.Empty, "no debit Wallet would refuse as invalid");
    }

    [Test]
    public async Task A_reservation_paid_with_tokens_is_not_billed_as_overage_after_a_change_to_a_plan_that_bills_the_meter()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(activated);
        WalletAnswers(user, "/internal/wallet/debit", 200, new { debited = true, balance = 94, transactionId = "tx-video" });
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "video.minute")).Status, Is.EqualTo(HttpStatusCode.OK)); // Pro's 1 a day
        var (status, reserved) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 3, meter: "video.minute");
        Assert.That((status, reserved.GetProperty("source").GetString()), Is.EqualTo((HttpStatusCode.OK, "tokens")), reserved.ToString());

        // Business bills video minutes past 1 a day; these 3 were paid with 6 tokens already.
        await Host.ApplyAsync(UsageHost.Updated(activated, "active", sequence: 2, planId: "business"));
        var (committed, body) = await Reserving_for_a_streaming_call.SettleAsync(Host, reserved.GetProperty("reservationId").GetString()!, "commit", 3);
        Assert.That(committed, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM usage_overage WHERE user_id = @user", new { user }), Is.Zero,
            "never billed twice: tokens paid for them");
    }

    [Test]
    public async Task A_slow_Wallet_does_not_hold_up_the_release_of_other_expired_reservations()
    {
        var user = await ProUserWithFourCreditsUsedAsync();
        WalletAnswers(user, "/internal/wallet/debit", 200, new { debited = true, balance = 970, transactionId = "tx-slow-returns" });
        // Wallet takes longer than Usage waits (5 s) for every return.
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/returns").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .AtPriority(1).RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json")
                .WithBodyAsJson(new { debited = true, returned = 20, balance = 990 }).WithDelay(TimeSpan.FromSeconds(6)));
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var (paid, body) = await ReserveAsync(user, 2, UsageHost.NewKey(), ttlSeconds: 60);
                Assert.That((paid, body.GetProperty("source").GetString()), Is.EqualTo((HttpStatusCode.OK, "tokens")), body.ToString());
            }
            var (status, quota) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 10, UsageHost.NewKey(), ttlSeconds: 120);
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), quota.ToString());
            var id = quota.GetProperty("reservationId").GetString();

            // All four expire; the three token-backed ones first, each owing its tokens back to the slow Wallet.
            Host.Clock.Advance(TimeSpan.FromSeconds(180));
            var started = DateTime.UtcNow;
            await UsageHost.EventuallyAsync(async () =>
                await Host.ScalarAsync("SELECT count(*) FROM reservations WHERE reservation_id = @id::uuid AND status = 'expired'", new { id }) == 1,
                TimeSpan.FromSeconds(30));
            Assert.That(DateTime.UtcNow - started, Is.LessThan(TimeSpan.FromSeconds(9)), // 15 s when it waits for the three returns
                "the quota reservation goes back to the window at the next sweep, not after the Wallet calls");
            Assert.That(await Host.ScalarAsync("SELECT count(*) FROM reservations WHERE user_id = @user AND status = 'expired' AND return_due", new { user }),
                Is.EqualTo(3), "the token returns stay owed until Wallet confirms them");
        }
        finally
        {
            Host.Clock.Reset();
        }
    }

    [Test]
    public async Task Past_the_window_the_whole_reservation_is_debited_once_and_a_commit_returns_what_it_did_not_use()
    {
        var user = await ProUserWithFourCreditsUsedAsync();
        WalletAnswers(user, "/internal/wallet/debit", 200, new { debited = true, balance = 970, transactionId = "tx-1" });
        WalletAnswers(user, "/internal/wallet/returns", 200, new { debited = true, returned = 20, balance = 990 });

        var key = UsageHost.NewKey();
        var (status, reserved) = await ReserveAsync(user, 3, key);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), reserved.ToString());
        Assert.That(reserved.GetProperty("source").GetString(), Is.EqualTo("tokens"));
        Assert.That((reserved.GetProperty("tokens").GetInt64(), reserved.GetProperty("tokenBalance").GetInt64(), reserved.GetProperty("remaining").GetInt64()),
            Is.EqualTo((30L, 970L, 1L)), "3 credits × 10 tokens; the window keeps its last credit");
        var id = reserved.GetProperty("reservationId").GetString()!;
        var debits = CallsOf(user, "/internal/wallet/debit");
        Assert.That(debits, Has.Count.EqualTo(1));
        Assert.That((debits[0].GetProperty("amount").GetInt64(), debits[0].GetProperty("idempotencyKey").GetString()), Is.EqualTo((30L, "reservation:" + id)));

        Assert.That(await TokenBalanceShownAsync(user), Is.EqualTo(970), "the usage view shows the balance Wallet answered the debit with");

        var (again, replay) = await ReserveAsync(user, 3, key);
        Assert.That((again, replay.ToString()), Is.EqualTo((HttpStatusCode.OK, reserved.ToString())), "the same key answers the first reservation");
        Assert.That(CallsOf(user, "/internal/wallet/debit"), Has.Count.EqualTo(1), "and Wallet is not asked again");

        var (committed, body) = await Reserving_for_a_streaming_call.SettleAsync(Host, id, "commit", 1);
        Assert.That(committed, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That((body.GetProperty("committed").GetInt64(), body.GetProperty("tokensSpent").GetInt64(), body.GetProperty("tokensReturned").GetInt64()),
            Is.EqualTo((1L, 10L, 20L)));
        var returns = CallsOf(user, "/internal/wallet/returns");
        Assert.That(returns, Has.Count.EqualTo(1));
        Assert.That((returns[0].GetProperty("amount").GetInt64(), returns[0].GetProperty("idempotencyKey").GetString()), Is.EqualTo((20L, "reservation:" + id)));
        Assert.That(await ReturnDueAsync(id), Is.Zero, "Wallet confirmed the return");
        Assert.That(await TokenBalanceShownAsync(user), Is.EqualTo(990), "and the balance after it");

        Assert.That((await Host.MeterAsync(user, "api.credit")).GetProperty("used").GetInt64(), Is.EqualTo(4), "tokens never move the window");
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM consumptions WHERE user_id = @user AND source = 'tokens' AND quantity = 1", new { user }),
            Is.EqualTo(1), "the committed credit is usage like a consume's, paid with tokens");
    }

    [Test]
    public async Task A_release_and_an_expiry_return_every_token()
    {
        var user = await ProUserWithFourCreditsUsedAsync();
        WalletAnswers(user, "/internal/wallet/debit", 200, new { debited = true, balance = 900, transactionId = "tx-2" });
        WalletAnswers(user, "/internal/wallet/returns", 200, new { debited = true, returned = 50, balance = 950 });

        var (_, released) = await ReserveAsync(user, 5, UsageHost.NewKey());
        var releasedId = released.GetProperty("reservationId").GetString()!;
        var (status, body) = await Reserving_for_a_streaming_call.SettleAsync(Host, releasedId, "release");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("tokensReturned").GetInt64(), Is.EqualTo(50));

        var (_, expiring) = await ReserveAsync(user, 2, UsageHost.NewKey(), ttlSeconds: 1);
        var expiringId = expiring.GetProperty("reservationId").GetString()!;
        await UsageHost.EventuallyAsync(async () =>
            await Host.ScalarAsync("SELECT count(*) FROM reservations WHERE reservation_id = @id::uuid AND status = 'expired' AND NOT return_due",
                new { id = expiringId }) == 1, TimeSpan.FromSeconds(10));

        var returns = CallsOf(user, "/internal/wallet/returns").Select(r => (r.GetProperty("idempotencyKey").GetString(), r.GetProperty("amount").GetInt64())).Distinct();
        Assert.That(returns, Is.EquivalentTo(new[] { ("reservation:" + releasedId, 50L), ("reservation:" + expiringId, 20L) }));
    }

    [Test]
    public async Task A_return_Wallet_cannot_take_now_is_kept_and_sent_again_until_it_is_confirmed()
    {
        var user = await ProUserWithFourCreditsUsedAsync();
        WalletAnswers(user, "/internal/wallet/debit", 200, new { debited = true, balance = 900, transactionId = "tx-3" });
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/returns").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .AtPriority(1).RespondWith(Response.Create().WithStatusCode(503));

        var (_, reserved) = await ReserveAsync(user, 4, UsageHost.NewKey());
        var id = reserved.GetProperty("reservationId").GetString()!;
        var (status, body) = await Reserving_for_a_streaming_call.SettleAsync(Host, id, "commit", 1);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), "a return Wallet refuses does not fail the commit: " + body);
        Assert.That(body.GetProperty("tokensReturned").GetInt64(), Is.EqualTo(30));
        Assert.That(await ReturnDueAsync(id), Is.EqualTo(1), "the return is owed, in the database");
        await UsageHost.EventuallyAsync(() => Task.FromResult(CallsOf(user, "/internal/wallet/returns").Count >= 2), TimeSpan.FromSeconds(10));
        Assert.That(await ReturnDueAsync(id), Is.EqualTo(1), "still owed while Wallet refuses");

        Host.Stubs.ResetMappings();
        WalletAnswers(user, "/internal/wallet/returns", 200, new { debited = true, returned = 30, balance = 930 });
        await UsageHost.EventuallyAsync(async () => await ReturnDueAsync(id) == 0, TimeSpan.FromSeconds(10));
        Assert.That(CallsOf(user, "/internal/wallet/returns").Select(r => r.GetProperty("amount").GetInt64()).Distinct(), Is.EqualTo(new[] { 30L }),
            "every attempt asks for the same return, so Wallet gives it once");
    }

    [Test]
    public async Task Too_few_tokens_is_402_insufficient_tokens_and_nothing_is_reserved()
    {
        var user = await ProUserWithFourCreditsUsedAsync();
        WalletAnswers(user, "/internal/wallet/debit", 402, new { code = "insufficient_tokens", balance = 12, status = 402, title = "Not enough tokens." });
        var key = UsageHost.NewKey();
        var (status, problem) = await ReserveAsync(user, 2, key);
        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired), problem.ToString());
        Assert.That((problem.GetProperty("code").GetString(), problem.GetProperty("balance").GetInt64(), problem.GetProperty("requested").GetInt64()),
            Is.EqualTo(("insufficient_tokens", 12L, 20L)));
        var (again, replay) = await ReserveAsync(user, 2, key);
        Assert.That((again, replay.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.PaymentRequired, "insufficient_tokens")));
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM reservations WHERE user_id = @user AND status <> 'refused'", new { user }), Is.Zero);
        Assert.That((await Host.MeterAsync(user, "api.credit")).GetProperty("used").GetInt64(), Is.EqualTo(4));
    }

    [Test]
    public async Task Wallet_unreachable_is_503_the_same_key_finishes_the_claim_and_a_claim_never_retried_gives_everything_back()
    {
        var user = await ProUserWithFourCreditsUsedAsync();
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/debit").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .AtPriority(1).RespondWith(Response.Create().WithStatusCode(500));
        var key = UsageHost.NewKey();
        var (status, problem) = await ReserveAsync(user, 3, key);
        Assert.That(status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), problem.ToString());
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("wallet_unavailable"));
        var abandoned = UsageHost.NewKey();
        Assert.That((await ReserveAsync(user, 2, abandoned, ttlSeconds: 1)).Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable));

        Host.Stubs.ResetMappings();
        WalletAnswers(user, "/internal/wallet/debit", 200, new { debited = true, balance = 870, transactionId = "tx-4" });
        WalletAnswers(user, "/internal/wallet/returns", 200, new { debited = false, returned = 0, balance = 870 });
        var (retried, reserved) = await ReserveAsync(user, 3, key);
        Assert.That(retried, Is.EqualTo(HttpStatusCode.OK), reserved.ToString());
        var id = reserved.GetProperty("reservationId").GetString()!;
        Assert.That(CallsOf(user, "/internal/wallet/debit").Where(d => d.GetProperty("amount").GetInt64() == 30)
            .Select(d => d.GetProperty("idempotencyKey").GetString()).Distinct(), Is.EqualTo(new[] { "reservation:" + id }),
            "the retry debits under the claim's key, so Wallet takes the tokens once");

        // The claim nobody retried expires like a reservation, and everything Wallet may have taken is asked back.
        await UsageHost.EventuallyAsync(() => Task.FromResult(CallsOf(user, "/internal/wallet/returns").Any(r => r.GetProperty("amount").GetInt64() == 20)),
            TimeSpan.FromSeconds(10));
        var (late, expired) = await ReserveAsync(user, 2, abandoned);
        Assert.That((late, expired.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.Conflict, "reservation_expired")), expired.ToString());
    }

    [Test]
    public async Task Verify_reports_a_return_owed_for_over_five_minutes_and_only_to_an_admin()
    {
        var user = UsageHost.NewUser();
        var before = await Host.VerifyAsync();
        Assert.That(before.TryGetProperty("ok", out _), Is.True, before.ToString());

        var settled = Host.Clock.GetUtcNow().UtcDateTime.AddMinutes(-10);
        await Host.ScalarAsync("""
            INSERT INTO reservations (reservation_id, idempotency_key, user_id, meter, quantity, status, status_code, answer, counted, quota_part,
                                      expires_at, created_at, settled_at, tokens, tokens_to_return, return_due)
            VALUES (gen_random_uuid(), @key, @user, 'api.credit', 2, 'released', 200, '{}', false, 0, @at, @at, @at, 20, 20, true)
            """, new { key = UsageHost.NewKey(), user, at = settled });
        var after = await Host.VerifyAsync();
        Assert.That(after.GetProperty("ok").GetBoolean(), Is.False, after.ToString());
        Assert.That(after.GetProperty("tokenReturnsOwedLate").GetInt64(), Is.EqualTo(before.GetProperty("tokenReturnsOwedLate").GetInt64() + 1));

        await Host.ScalarAsync("UPDATE reservations SET return_due = false WHERE user_id = @user", new { user });
        Assert.That((await Host.Service.GetAsync("/api/admin/usage/verify")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "a service token is not an admin");
    }
}
