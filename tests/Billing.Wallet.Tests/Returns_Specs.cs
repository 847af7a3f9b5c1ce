using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Billing.Wallet.Tests;

/// <summary>
/// Returns (<c>POST /internal/wallet/returns</c>): a token-backed reservation that used less than it reserved gives the
/// rest back, once, into the lots the debit took it from.
/// </summary>
public sealed class Returning_unused_tokens
{
    private static WalletHost Host => Hosts.Packs;

    private static async Task<(HttpStatusCode Status, JsonElement Body)> ReturnAsync(string userId, long amount, string key)
    {
        var response = await Host.Service.PostAsJsonAsync("/internal/wallet/returns", new { userId, amount, idempotencyKey = key });
        return (response.StatusCode, await WalletHost.BodyAsync(response));
    }

    /// <summary>A new user granted <paramref name="granted"/> never-expiring tokens, <paramref name="debited"/> of them debited under a reservation's key.</summary>
    private static async Task<(string User, string Key)> DebitedAsync(long granted, long debited)
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, granted);
        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, debited, key)).Status, Is.EqualTo(HttpStatusCode.OK));
        return (user, key);
    }

    /// <summary>The admin verify finds every wallet's balance, ledger and lots in agreement.</summary>
    private static async Task AssertVerifiedAsync()
    {
        var verify = await WalletHost.BodyAsync(await Host.Admin.GetAsync("/api/admin/wallet/verify"));
        Assert.That(verify.GetProperty("mismatches").GetArrayLength(), Is.Zero, verify.ToString());
    }

    private static async Task<long[]> ExpiringAsync(string user)
    {
        using var client = Host.UserClient(user);
        var wallet = await WalletHost.BodyAsync(await client.GetAsync("/api/wallet/me"));
        return wallet.TryGetProperty("expiring", out var expiring) && expiring.ValueKind == JsonValueKind.Array
            ? expiring.EnumerateArray().Select(e => e.GetProperty("amount").GetInt64()).ToArray()
            : [];
    }

    [Test]
    public async Task A_return_goes_back_once_never_expiring_tokens_first_then_the_latest_expiring_lot()
    {
        var user = WalletHost.NewUser();
        var now = Host.Clock.GetUtcNow();
        await Host.GrantAsync(user, 1000);                              // never expires
        await Host.GrantAsync(user, 300, expiresAt: now.AddDays(10));   // expires later
        await Host.GrantAsync(user, 200, expiresAt: now.AddDays(5));    // expires soonest
        var key = "reservation:" + Guid.NewGuid();
        var (debited, debit) = await Host.DebitAsync(user, 1300, key, "reservation:api.credit:r1"); // 200 + 300 from the lots, 800 forever tokens
        Assert.That(debited, Is.EqualTo(HttpStatusCode.OK), debit.ToString());
        Assert.That(await ExpiringAsync(user), Is.Empty);

        var (status, body) = await ReturnAsync(user, 900, key);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That((body.GetProperty("debited").GetBoolean(), body.GetProperty("returned").GetInt64(), body.GetProperty("balance").GetInt64()),
            Is.EqualTo((true, 900L, 1100L)));
        Assert.That(await ExpiringAsync(user), Is.EqualTo(new[] { 100L }), "800 forever tokens back first, then 100 into the later lot");

        var (again, replay) = await ReturnAsync(user, 900, key);
        Assert.That(again, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(replay.GetProperty("returned").GetInt64(), Is.EqualTo(900));
        Assert.That((await ReturnAsync(user, 901, key)).Status, Is.EqualTo(HttpStatusCode.Conflict), "another amount under the same debit");
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(1100));

        var items = await Host.TransactionsAsync(user);
        var returned = items.Single(i => i.GetProperty("kind").GetString() == "return");
        Assert.That((returned.GetProperty("amount").GetInt64(), returned.GetProperty("balanceAfter").GetInt64(), returned.GetProperty("reference").GetString()),
            Is.EqualTo((900L, 1100L, "reservation:api.credit:r1")), "the return names what the debit named");
    }

    [Test]
    public async Task Tokens_returned_into_a_lot_that_expired_meanwhile_leave_again_through_an_expiry_entry()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 200, expiresAt: Host.Clock.GetUtcNow().AddDays(1));
        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 150, key)).Status, Is.EqualTo(HttpStatusCode.OK));
        Host.Clock.Advance(TimeSpan.FromDays(2));
        try
        {
            var (status, body) = await ReturnAsync(user, 100, key);
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That(body.GetProperty("balance").GetInt64(), Is.Zero);
            var kinds = (await Host.TransactionsAsync(user)).Select(i => (i.GetProperty("kind").GetString(), i.GetProperty("amount").GetInt64())).ToList();
            Assert.That(kinds, Does.Contain(("return", 100L)));
            Assert.That(kinds.Where(k => k.Item1 == "expiry").Sum(k => k.Item2), Is.EqualTo(-150L), "50 at the expiry, then the 100 returned");
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromDays(-2));
        }
    }

    [Test]
    public async Task A_return_before_any_debit_takes_nothing_and_the_late_debit_takes_nothing_either()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 500);
        var key = "reservation:" + Guid.NewGuid();

        var (status, body) = await ReturnAsync(user, 50, key);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That((body.GetProperty("debited").GetBoolean(), body.GetProperty("returned").GetInt64(), body.GetProperty("balance").GetInt64()),
            Is.EqualTo((false, 0L, 500L)));
        var (late, _) = await Host.DebitAsync(user, 50, key);
        Assert.That(late, Is.EqualTo(HttpStatusCode.Conflict), "a debit under a key given back first never happens");
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(500));
    }

    [Test]
    public async Task A_refused_debit_has_nothing_to_return_and_a_return_never_exceeds_the_debit_or_crosses_users()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 40);
        var refused = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 50, refused)).Status, Is.EqualTo(HttpStatusCode.PaymentRequired));
        var (status, body) = await ReturnAsync(user, 50, refused);
        Assert.That((status, body.GetProperty("debited").GetBoolean(), body.GetProperty("returned").GetInt64()), Is.EqualTo((HttpStatusCode.OK, false, 0L)));

        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 30, key)).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await ReturnAsync(user, 31, key)).Status, Is.EqualTo(HttpStatusCode.Conflict), "more than was debited");
        Assert.That((await ReturnAsync(WalletHost.NewUser(), 10, key)).Status, Is.EqualTo(HttpStatusCode.Conflict), "another user's debit");
        Assert.That((await ReturnAsync(user, 0, key)).Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(10));
    }

    [Test]
    public async Task Twenty_concurrent_returns_of_one_debit_return_it_once()
    {
        var (user, key) = await DebitedAsync(granted: 100, debited: 70);

        var answers = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => ReturnAsync(user, 60, key)));
        Assert.That(answers.Select(a => a.Status), Is.All.EqualTo(HttpStatusCode.OK));
        Assert.That(answers.Select(a => a.Body.GetProperty("returned").GetInt64()), Is.All.EqualTo(60));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(90));
        Assert.That((await Host.TransactionsAsync(user)).Count(i => i.GetProperty("kind").GetString() == "return"), Is.EqualTo(1));

        await AssertVerifiedAsync();
    }

    [Test]
    public async Task All_returns_the_whole_debit_and_nothing_when_there_was_none()
    {
        var (user, key) = await DebitedAsync(granted: 100, debited: 70);

        var response = await Host.Service.PostAsJsonAsync("/internal/wallet/returns", new { userId = user, all = true, idempotencyKey = key });
        var body = await WalletHost.BodyAsync(response);
        Assert.That((response.StatusCode, body.GetProperty("returned").GetInt64(), body.GetProperty("balance").GetInt64()),
            Is.EqualTo((HttpStatusCode.OK, 70L, 100L)), body.ToString());
        Assert.That((await ReturnAsync(user, 70, key)).Status, Is.EqualTo(HttpStatusCode.OK), "all of 70 is the same return as 70");

        var never = "consume:" + Guid.NewGuid();
        var cancelled = await Host.Service.PostAsJsonAsync("/internal/wallet/returns", new { userId = user, all = true, idempotencyKey = never });
        Assert.That((await WalletHost.BodyAsync(cancelled)).GetProperty("debited").GetBoolean(), Is.False);
        Assert.That((await Host.DebitAsync(user, 10, never)).Status, Is.EqualTo(HttpStatusCode.Conflict), "the key is cancelled");
        var both = await Host.Service.PostAsJsonAsync("/internal/wallet/returns", new { userId = user, all = true, amount = 5, idempotencyKey = key });
        Assert.That(both.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
    }

    [Test]
    public async Task Tokens_of_a_pack_refunded_while_they_were_reserved_go_to_the_refund_when_they_come_back()
    {
        var user = WalletHost.NewUser();
        var purchase = WalletHost.Purchased(user);
        await Host.PublishAsync(purchase);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 100_000);
        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 100_000, key)).Status, Is.EqualTo(HttpStatusCode.OK), "the whole pack reserved");

        await Host.PublishAsync(WalletHost.Refunded(purchase, 500));
        await WalletHost.EventuallyAsync(async () => (await Host.TransactionsAsync(user)).Any(t => t.GetProperty("kind").GetString() == "refund"));
        var (status, body) = await ReturnAsync(user, 60_000, key); // the stream used 40,000
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("balance").GetInt64(), Is.Zero, "the refunded pack's tokens do not come back to the user");
        Assert.That(await Host.BalanceAsync(user), Is.Zero);

        var items = await Host.TransactionsAsync(user);
        Assert.That(items.Select(i => (i.GetProperty("kind").GetString(), i.GetProperty("amount").GetInt64())),
            Is.EqualTo(new[] { ("refund", -60_000L), ("return", 60_000L), ("refund", 0L), ("debit", -100_000L), ("purchase", 100_000L) }));
        Assert.That(await Host.ScalarAsync("SELECT clawback_outstanding FROM wallet_purchases WHERE user_id = @user", new { user }), Is.EqualTo(40_000),
            "the 40,000 really spent stay owed");
        await AssertVerifiedAsync();
    }

    /// <summary>
    /// 1,000 tokens that never expire, and a Sprint pack (1,000, expiring in 30 days) reserved in full by a stream; the pack
    /// is refunded (<paramref name="refunded"/> %) while its tokens are out, so the refund takes the user's own in their place.
    /// </summary>
    private static async Task<(string User, string Key)> RefundedWhileReservedAsync(long refunded)
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 1_000);
        var sprint = WalletHost.Purchased(user, "sprint", tokens: 1_000, amount: 100) with { ExpiresAfterDays = 30 };
        await Host.PublishAsync(sprint);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 2_000);
        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 1_000, key)).Status, Is.EqualTo(HttpStatusCode.OK), "the pack's lot reserved (soonest-expiring first)");
        await Host.PublishAsync(WalletHost.Refunded(sprint, refunded));
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 1_000 - 1_000 * refunded / 100);
        return (user, key);
    }

    [TestCase(100, 1_000L, new long[0])]
    [TestCase(50, 1_500L, new[] { 500L })] // half refunded: the other half is still the user's pack, expiring with it
    public async Task Tokens_of_a_refunded_pack_that_come_back_replace_the_users_own_tokens_the_refund_took_in_their_place(
        long refunded, long balanceAfter, long[] expiringAfter)
    {
        var (user, key) = await RefundedWhileReservedAsync(refunded);

        var (status, body) = await ReturnAsync(user, 1_000, key);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("balance").GetInt64(), Is.EqualTo(balanceAfter));
        Assert.That(await ExpiringAsync(user), Is.EqualTo(expiringAfter),
            "the user's own tokens never expire; only what is left of the pack's (not refunded) expires with it");
        await AssertVerifiedAsync();
    }

    [Test]
    public async Task Tokens_of_a_refunded_pack_that_come_back_after_it_expired_still_give_the_user_their_own_tokens_back()
    {
        // The same, but the stream ends after the pack's 30 days: its tokens come back into an expired lot. They are the
        // refund's all the same, and the user's own 1,000 the refund took in their place come back; nothing expires.
        var (user, key) = await RefundedWhileReservedAsync(100);

        Host.Clock.Advance(TimeSpan.FromDays(31));
        try
        {
            var (status, body) = await ReturnAsync(user, 1_000, key);

            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That(body.GetProperty("balance").GetInt64(), Is.EqualTo(1_000), "the user's own tokens, back");
            Assert.That(await ExpiringAsync(user), Is.Empty);
            var items = await Host.TransactionsAsync(user);
            Assert.That(items[0].GetProperty("kind").GetString(), Is.EqualTo("return"), "nothing expired");
            await AssertVerifiedAsync();
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromDays(-31));
        }
    }

    [Test]
    public async Task Tokens_of_a_refunded_pack_that_come_back_after_it_expired_pay_its_debt_and_give_the_rest_of_the_users_own_back()
    {
        // 500 tokens that never expire and a Sprint pack of 1,000 (30 days) reserved in full; the pack is refunded: the
        // refund takes the user's own 500 and leaves 500 owed. After the pack's 30 days the stream ends unused: its 1,000 pay
        // the 500 owed and replace the 500 taken, so the user ends with their own 500 and owes nothing.
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 500);
        var sprint = WalletHost.Purchased(user, "sprint", tokens: 1_000, amount: 100) with { ExpiresAfterDays = 30 };
        await Host.PublishAsync(sprint);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 1_500);
        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 1_000, key)).Status, Is.EqualTo(HttpStatusCode.OK), "the pack's lot reserved (soonest-expiring first)");
        await Host.PublishAsync(WalletHost.Refunded(sprint, 100));
        await WalletHost.EventuallyAsync(async () => await Host.ScalarAsync(
            "SELECT clawback_outstanding FROM wallet_purchases WHERE user_id = @user", new { user }) == 500);

        Host.Clock.Advance(TimeSpan.FromDays(31));
        try
        {
            var (status, body) = await ReturnAsync(user, 1_000, key);

            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That(body.GetProperty("balance").GetInt64(), Is.EqualTo(500), "the user's own tokens, back");
            Assert.That(await Host.ScalarAsync("SELECT clawback_outstanding FROM wallet_purchases WHERE user_id = @user", new { user }), Is.Zero);
            Assert.That(await ExpiringAsync(user), Is.Empty);
            await AssertVerifiedAsync();
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromDays(-31));
        }
    }

    [Test]
    public async Task Tokens_that_replace_a_promotion_the_refund_took_expire_at_once_when_the_promotion_has_expired()
    {
        // A Sprint pack reserved in full, then a promotion granted (expiring tomorrow); the pack is refunded and the refund
        // takes the promotion in its place. Two days later the stream ends unused: the pack's tokens go to the refund, and
        // the promotion, given back, has expired.
        var user = WalletHost.NewUser();
        var sprint = WalletHost.Purchased(user, "sprint", tokens: 1_000, amount: 100) with { ExpiresAfterDays = 30 };
        await Host.PublishAsync(sprint);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 1_000);
        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 1_000, key)).Status, Is.EqualTo(HttpStatusCode.OK));
        await Host.GrantAsync(user, 1_000, expiresAt: Host.Clock.GetUtcNow().AddDays(1));
        await Host.PublishAsync(WalletHost.Refunded(sprint, 100));
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 0);

        Host.Clock.Advance(TimeSpan.FromDays(2));
        try
        {
            var (status, body) = await ReturnAsync(user, 1_000, key);
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That(body.GetProperty("balance").GetInt64(), Is.Zero, "the promotion has expired; the pack is refunded");
            await AssertVerifiedAsync();
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromDays(-2));
        }
    }

    [Test]
    public async Task A_refund_debt_is_paid_from_the_tokens_that_came_back_not_from_a_promotion_that_expires_sooner()
    {
        // A Starter pack (never expires) reserved in full and refunded: 100,000 owed. A promotion of 1,000 expiring tomorrow
        // is granted; then the stream ends unused and the 100,000 come back and pay the debt.
        var user = WalletHost.NewUser();
        var starter = WalletHost.Purchased(user);
        await Host.PublishAsync(starter);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 100_000);
        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 100_000, key)).Status, Is.EqualTo(HttpStatusCode.OK));
        await Host.PublishAsync(WalletHost.Refunded(starter, 500));
        await WalletHost.EventuallyAsync(async () => await Host.ScalarAsync(
            "SELECT clawback_outstanding FROM wallet_purchases WHERE user_id = @user", new { user }) == 100_000);
        await Host.GrantAsync(user, 1_000, expiresAt: Host.Clock.GetUtcNow().AddDays(1));

        var (status, body) = await ReturnAsync(user, 100_000, key);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("balance").GetInt64(), Is.EqualTo(1_000));
        Assert.That(await ExpiringAsync(user), Is.EqualTo(new[] { 1_000L }), "the promotion still expires tomorrow");
        Assert.That(await Host.ScalarAsync("SELECT clawback_outstanding FROM wallet_purchases WHERE user_id = @user", new { user }), Is.Zero);
    }

    [Test]
    public async Task Tokens_debited_after_the_refund_come_back_to_the_user_and_pay_none_of_its_debt()
    {
        // The refund left 70,000 owed (spent before it); a pack bought afterwards is the user's: a reservation on it that
        // comes back unused must give the tokens back, as a consume that was never returned would have kept them.
        var user = WalletHost.NewUser();
        var refunded = WalletHost.Purchased(user);
        await Host.PublishAsync(refunded);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 100_000);
        Assert.That((await Host.DebitAsync(user, 70_000, WalletHost.NewKey())).Status, Is.EqualTo(HttpStatusCode.OK));
        await Host.PublishAsync(WalletHost.Refunded(refunded, 500));
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 0);

        var bought = WalletHost.Purchased(user);
        await Host.PublishAsync(bought);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 100_000);
        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 50_000, key)).Status, Is.EqualTo(HttpStatusCode.OK));
        var (status, body) = await ReturnAsync(user, 50_000, key);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("balance").GetInt64(), Is.EqualTo(100_000));
        Assert.That(await Host.ScalarAsync("SELECT clawback_outstanding FROM wallet_purchases WHERE checkout_session_id = @session",
            new { session = refunded.CheckoutSessionId }), Is.EqualTo(70_000), "still owed, by returns of what was spent before the refund");
    }

    [Test]
    public async Task Tokens_that_come_back_into_an_expired_lot_expire_and_pay_no_refund_debt()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 100_000, expiresAt: Host.Clock.GetUtcNow().AddDays(1));
        var purchase = WalletHost.Purchased(user);
        await Host.PublishAsync(purchase);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 200_000);
        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 100_000, key)).Status, Is.EqualTo(HttpStatusCode.OK), "the granted lot reserved (soonest-expiring first)");
        Assert.That((await Host.DebitAsync(user, 100_000, WalletHost.NewKey())).Status, Is.EqualTo(HttpStatusCode.OK), "the pack spent");
        await Host.PublishAsync(WalletHost.Refunded(purchase, 500));
        await WalletHost.EventuallyAsync(async () => await Host.ScalarAsync(
            "SELECT clawback_outstanding FROM wallet_purchases WHERE user_id = @user", new { user }) == 100_000);

        Host.Clock.Advance(TimeSpan.FromDays(2));
        try
        {
            var (status, body) = await ReturnAsync(user, 100_000, key); // the reservation is released after the grant expired
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            Assert.That(body.GetProperty("balance").GetInt64(), Is.Zero);
            var items = await Host.TransactionsAsync(user);
            Assert.That(items.Take(2).Select(i => (i.GetProperty("kind").GetString(), i.GetProperty("amount").GetInt64())),
                Is.EqualTo(new[] { ("expiry", -100_000L), ("return", 100_000L) }), "the returned tokens expired at once");
            Assert.That(await Host.ScalarAsync("SELECT clawback_outstanding FROM wallet_purchases WHERE user_id = @user", new { user }), Is.EqualTo(100_000),
                "expired tokens pay nothing: the debt stays");
            await AssertVerifiedAsync();
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromDays(-2));
        }
    }

    [Test]
    public async Task A_refused_debit_stays_refused_after_its_return_and_a_retry_gets_its_402_again()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 10);
        var key = "reservation:" + Guid.NewGuid();
        Assert.That((await Host.DebitAsync(user, 100, key)).Status, Is.EqualTo(HttpStatusCode.PaymentRequired));
        var released = await Host.Service.PostAsJsonAsync("/internal/wallet/returns", new { userId = user, all = true, idempotencyKey = key });
        Assert.That((await WalletHost.BodyAsync(released)).GetProperty("debited").GetBoolean(), Is.False);

        var (status, body) = await Host.DebitAsync(user, 100, key); // the caller retries the debit it never saw answered
        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired), body.ToString());
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(10));

        var never = "reservation:" + Guid.NewGuid();
        await Host.Service.PostAsJsonAsync("/internal/wallet/returns", new { userId = user, all = true, idempotencyKey = never });
        Assert.That((await Host.DebitAsync(user, 5, never)).Status, Is.EqualTo(HttpStatusCode.Conflict), "a key returned before any debit stays cancelled");
    }
}
