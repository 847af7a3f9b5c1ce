using System.Net;
using Npgsql;

namespace Billing.Wallet.Tests;

public sealed class The_ledger
{
    private static WalletHost Host => Hosts.Packs;

    [Test]
    public async Task The_database_refuses_a_negative_balance_even_from_raw_SQL()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 5);

        var ex = Assert.ThrowsAsync<PostgresException>(() => Host.ScalarAsync("UPDATE wallets SET balance = balance - 6 WHERE user_id = @user", new { user }));
        Assert.That(ex!.SqlState, Is.EqualTo(PostgresErrorCodes.CheckViolation));
        Assert.That(ex.ConstraintName, Is.EqualTo("ck_wallets_balance_not_negative"));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(5));
    }

    [Test]
    public async Task Ledger_entries_cannot_be_changed_or_deleted()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 5);

        Assert.ThrowsAsync<PostgresException>(() => Host.ScalarAsync("UPDATE wallet_ledger SET amount = 500 WHERE user_id = @user", new { user }));
        Assert.ThrowsAsync<PostgresException>(() => Host.ScalarAsync("DELETE FROM wallet_ledger WHERE user_id = @user", new { user }));
        Assert.That(await Host.ScalarAsync("SELECT SUM(amount) FROM wallet_ledger WHERE user_id = @user", new { user }), Is.EqualTo(5));
    }

    [Test]
    public async Task Every_balance_equals_the_sum_of_its_ledger_and_verify_says_so()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 1_000);
        await Host.DebitAsync(user, 300, WalletHost.NewKey());
        await Host.DebitAsync(user, 2_000, WalletHost.NewKey());

        Assert.That(await Host.ScalarAsync("SELECT SUM(amount) FROM wallet_ledger WHERE user_id = @user", new { user }), Is.EqualTo(await Host.BalanceAsync(user)));
        var verify = await Host.Admin.GetAsync("/api/admin/wallet/verify");
        var body = await WalletHost.BodyAsync(verify);
        Assert.That(verify.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(body.GetProperty("ok").GetBoolean(), Is.True, body.ToString());
        Assert.That(body.GetProperty("mismatches").GetArrayLength(), Is.EqualTo(0));
        Assert.That(body.GetProperty("walletsChecked").GetInt32(), Is.GreaterThan(0));
    }

    [Test]
    public async Task Verify_names_a_wallet_whose_balance_was_changed_behind_the_ledgers_back()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 10);
        await Host.ScalarAsync("UPDATE wallets SET balance = balance + 1 WHERE user_id = @user", new { user });
        try
        {
            var body = await WalletHost.BodyAsync(await Host.Admin.GetAsync("/api/admin/wallet/verify"));
            var mismatch = body.GetProperty("mismatches").EnumerateArray().Single(m => m.GetProperty("userId").GetString() == user);
            Assert.That(mismatch.GetProperty("balance").GetInt64(), Is.EqualTo(11));
            Assert.That(mismatch.GetProperty("ledgerSum").GetInt64(), Is.EqualTo(10));
        }
        finally
        {
            await Host.ScalarAsync("UPDATE wallets SET balance = balance - 1 WHERE user_id = @user", new { user });
        }
    }

    [Test]
    public async Task Transactions_page_newest_first_with_an_opaque_cursor()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 100);
        for (var i = 1; i <= 6; i++)
        {
            await Host.DebitAsync(user, i, WalletHost.NewKey(), $"consumption-{i}");
        }
        using var client = Host.UserClient(user);

        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var body = await WalletHost.BodyAsync(await client.GetAsync("/api/wallet/me/transactions?limit=3" + (cursor is null ? "" : "&cursor=" + cursor)));
            seen.AddRange(body.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("reference").GetString()!));
            cursor = body.GetProperty("nextCursor").ValueKind == System.Text.Json.JsonValueKind.Null ? null : body.GetProperty("nextCursor").GetString();
            pages++;
        }
        while (cursor is not null && pages < 10);

        Assert.That(seen.Take(6), Is.EqualTo(Enumerable.Range(1, 6).Reverse().Select(i => $"consumption-{i}")));
        Assert.That(seen, Has.Count.EqualTo(7));
        Assert.That(pages, Is.EqualTo(3));

        var first = await WalletHost.BodyAsync(await client.GetAsync("/api/wallet/me/transactions?limit=1"));
        var item = first.GetProperty("items")[0];
        Assert.That(item.GetProperty("kind").GetString(), Is.EqualTo("debit"));
        Assert.That(item.GetProperty("amount").GetInt64(), Is.EqualTo(-6));
        Assert.That(item.GetProperty("balanceAfter").GetInt64(), Is.EqualTo(100 - 21));
        Assert.That(item.TryGetProperty("createdAt", out _) && item.TryGetProperty("id", out _), Is.True);
    }

    [TestCase("limit=0")]
    [TestCase("limit=201")]
    [TestCase("limit=abc")]
    [TestCase("cursor=not-a-cursor")]
    public async Task A_bad_limit_or_cursor_answers_400(string query)
    {
        using var client = Host.UserClient(WalletHost.NewUser());
        var response = await client.GetAsync("/api/wallet/me/transactions?" + query);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
    }
}
