namespace Billing.Wallet.Tests;

public sealed class Refunding_a_pack
{
    private static WalletHost Host => Hosts.Packs;

    private static async Task<Contracts.TokenPackPurchased> BuyAsync(string user)
    {
        var purchase = WalletHost.Purchased(user);
        await Host.PublishAsync(purchase);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) >= 100_000);
        return purchase;
    }

    [Test]
    public async Task A_full_refund_claws_back_the_whole_pack()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);

        await Host.PublishAsync(WalletHost.Refunded(purchase, 500));
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 0);

        var refund = (await Host.TransactionsAsync(user))[0];
        Assert.That(refund.GetProperty("kind").GetString(), Is.EqualTo("refund"));
        Assert.That(refund.GetProperty("amount").GetInt64(), Is.EqualTo(-100_000));
        Assert.That(refund.GetProperty("shortfall").GetInt64(), Is.EqualTo(0));
        Assert.That(await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.TokensClawedBack,%' AND payload->>'userId' = @user",
            new { user }), Is.EqualTo(1));
    }

    [Test]
    public async Task A_refund_after_spending_takes_what_is_left_and_the_ledger_shows_the_shortfall()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);
        var (status, _) = await Host.DebitAsync(user, 70_000, WalletHost.NewKey(), "consumption-1");
        Assert.That((int)status, Is.EqualTo(200));

        await Host.PublishAsync(WalletHost.Refunded(purchase, 500));
        await WalletHost.EventuallyAsync(async () => (await Host.TransactionsAsync(user)).Count == 3);

        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(0));
        var refund = (await Host.TransactionsAsync(user))[0];
        Assert.That(refund.GetProperty("kind").GetString(), Is.EqualTo("refund"));
        Assert.That(refund.GetProperty("amount").GetInt64(), Is.EqualTo(-30_000));
        Assert.That(refund.GetProperty("requested").GetInt64(), Is.EqualTo(100_000));
        Assert.That(refund.GetProperty("shortfall").GetInt64(), Is.EqualTo(70_000));
        Assert.That(refund.GetProperty("balanceAfter").GetInt64(), Is.EqualTo(0));
    }

    [Test]
    public async Task Partial_refunds_claw_back_their_share_once_each_in_any_order()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);

        var half = WalletHost.Refunded(purchase, 250);
        var fifth = WalletHost.Refunded(purchase, 100);
        await Host.PublishAsync(fifth);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 80_000);
        await Host.PublishAsync(half);
        await Host.PublishAsync(half, Guid.NewGuid());
        await Host.PublishAsync(fifth, Guid.NewGuid()); // late and smaller: already covered
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 50_000);
        await Task.Delay(500);

        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(50_000));
        var refunds = (await Host.TransactionsAsync(user)).Where(i => i.GetProperty("kind").GetString() == "refund").ToList();
        Assert.That(refunds.Select(r => r.GetProperty("amount").GetInt64()), Is.EqualTo(new[] { -30_000L, -20_000L }));
    }
}
