using System.Net;
using System.Net.Http.Json;

namespace Billing.Wallet.Tests;

public sealed class Granting_and_expiring_tokens
{
    [Test]
    public async Task An_admin_grant_with_the_same_key_is_granted_once()
    {
        var host = Hosts.Packs;
        var user = WalletHost.NewUser();
        var key = WalletHost.NewKey();

        var first = await host.GrantAsync(user, 250, key, reason: "community prize");
        var again = await host.GrantAsync(user, 250, key, reason: "community prize");
        var conflict = await host.Admin.PostAsJsonAsync($"/api/admin/wallet/{user}/grants", new { amount = 251, idempotencyKey = key, reason = "x" });

        Assert.That(first.GetProperty("kind").GetString(), Is.EqualTo("grant"));
        Assert.That(first.GetProperty("amount").GetInt64(), Is.EqualTo(250));
        Assert.That(first.GetProperty("reason").GetString(), Is.EqualTo("community prize"));
        Assert.That(again.GetProperty("id").GetString(), Is.EqualTo(first.GetProperty("id").GetString()));
        Assert.That(conflict.StatusCode, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(await host.BalanceAsync(user), Is.EqualTo(250));
    }

    [Test]
    public async Task A_new_wallet_gets_the_sign_up_grant_once()
    {
        var host = Hosts.Trial;
        var user = WalletHost.NewUser();
        using var client = host.UserClient(user);

        var seen = await Task.WhenAll(Enumerable.Range(0, 5).Select(async _ => await WalletHost.BodyAsync(await client.GetAsync("/api/wallet/me"))));
        Assert.That(seen.Select(s => s.GetProperty("balance").GetInt64()), Is.All.EqualTo(5000));
        var items = await host.TransactionsAsync(user);
        Assert.That(items, Has.Count.EqualTo(1));
        Assert.That(items[0].GetProperty("kind").GetString(), Is.EqualTo("grant"));
        Assert.That(items[0].GetProperty("reference").GetString(), Is.EqualTo("sign-up"));

        // A user whose first contact is a debit gets the grant first.
        var other = WalletHost.NewUser();
        var (status, body) = await host.DebitAsync(other, 1000, WalletHost.NewKey());
        Assert.That((int)status, Is.EqualTo(200), body.ToString());
        Assert.That(body.GetProperty("balance").GetInt64(), Is.EqualTo(4000));
    }

    [Test]
    public async Task Expiring_tokens_are_spent_first_and_the_rest_leave_through_an_expiry_entry()
    {
        var host = Hosts.Packs;
        var user = WalletHost.NewUser();
        var now = host.Clock.GetUtcNow();
        await host.GrantAsync(user, 1000);                                   // never expires
        await host.GrantAsync(user, 300, expiresAt: now.AddDays(10));        // expires later
        await host.GrantAsync(user, 200, expiresAt: now.AddDays(5));         // expires soonest
        using var client = host.UserClient(user);

        var wallet = await WalletHost.BodyAsync(await client.GetAsync("/api/wallet/me"));
        Assert.That(wallet.GetProperty("balance").GetInt64(), Is.EqualTo(1500));
        Assert.That(wallet.GetProperty("expiring").EnumerateArray().Select(e => e.GetProperty("amount").GetInt64()), Is.EqualTo(new[] { 200L, 300L }));

        await host.DebitAsync(user, 250, WalletHost.NewKey());               // 200 from the soonest, 50 from the later lot
        wallet = await WalletHost.BodyAsync(await client.GetAsync("/api/wallet/me"));
        Assert.That(wallet.GetProperty("expiring").EnumerateArray().Select(e => e.GetProperty("amount").GetInt64()), Is.EqualTo(new[] { 250L }));

        host.Clock.Advance(TimeSpan.FromDays(11));
        try
        {
            Assert.That(await host.BalanceAsync(user), Is.EqualTo(1000));
            var expiry = (await host.TransactionsAsync(user))[0];
            Assert.That(expiry.GetProperty("kind").GetString(), Is.EqualTo("expiry"));
            Assert.That(expiry.GetProperty("amount").GetInt64(), Is.EqualTo(-250));
            Assert.That(expiry.GetProperty("balanceAfter").GetInt64(), Is.EqualTo(1000));
            Assert.That(await host.ScalarAsync("SELECT SUM(amount) FROM wallet_ledger WHERE user_id = @user", new { user }), Is.EqualTo(1000));
        }
        finally
        {
            host.Clock.Advance(TimeSpan.FromDays(-11));
        }
    }
}
