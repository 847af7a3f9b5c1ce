namespace Billing.Wallet.Tests;

/// <summary>
/// A pack's claw-back follows its payment both ways: a refund that fails (the card was closed) or a chargeback the merchant
/// wins gives back what it took — what was still owed is forgiven first — and messages arriving in any order end in the
/// same place.
/// </summary>
public sealed class Giving_back_a_refund
{
    private static WalletHost Host => Hosts.Packs;

    private static async Task<Contracts.TokenPackPurchased> BuyAsync(string user)
    {
        var purchase = WalletHost.Purchased(user);
        await Host.PublishAsync(purchase);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) >= 100_000);
        return purchase;
    }

    private static Contracts.PaymentRefunded Failed(Contracts.TokenPackPurchased purchase, long stillRefunded = 0, int undone = 1) =>
        WalletHost.Refunded(purchase, stillRefunded) with { RefundsUndone = undone };

    private static Task<long> Outstanding(Contracts.TokenPackPurchased purchase) => Host.ScalarAsync(
        "SELECT clawback_outstanding FROM wallet_purchases WHERE checkout_session_id = @s", new { s = purchase.CheckoutSessionId });

    private static async Task SettledAsync(string user, long balance)
    {
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == balance);
        await Task.Delay(300); // nothing else moves it
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(balance));
    }

    [Test]
    public async Task A_refund_that_fails_gives_the_pack_back_and_a_late_copy_of_the_refund_takes_nothing()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);
        var refund = WalletHost.Refunded(purchase, 500);
        await Host.PublishAsync(refund);
        await SettledAsync(user, 0);

        await Host.PublishAsync(Failed(purchase));
        await SettledAsync(user, 100_000);
        var back = (await Host.TransactionsAsync(user))[0];
        Assert.That((back.GetProperty("kind").GetString(), back.GetProperty("amount").GetInt64()), Is.EqualTo(("refund_reversal", 100_000L)));
        Assert.That(await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.TokensGranted,%' AND payload->>'userId' = @user AND payload->>'kind' = 'refund_reversal'",
            new { user }), Is.EqualTo(1), "Usage hears of the balance");

        await Host.PublishAsync(refund, Guid.NewGuid()); // the refund's message again, late
        await SettledAsync(user, 100_000);

        await Host.PublishAsync(WalletHost.Refunded(purchase, 250) with { RefundsUndone = 1 }); // refunded again, half
        await SettledAsync(user, 50_000);
        var verify = await WalletHost.BodyAsync(await Host.Admin.GetAsync("/api/admin/wallet/verify"));
        Assert.That(verify.GetProperty("mismatches").GetArrayLength(), Is.Zero, verify.ToString());
    }

    [Test]
    public async Task Tokens_given_back_keep_the_expiry_of_their_pack()
    {
        var user = WalletHost.NewUser();
        var sprint = WalletHost.Purchased(user, "sprint", tokens: 1000, amount: 100); // expires after 30 days
        await Host.PublishAsync(sprint);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 1000);
        await Host.PublishAsync(WalletHost.Refunded(sprint, 100));
        await SettledAsync(user, 0);

        await Host.PublishAsync(Failed(sprint));
        await SettledAsync(user, 1000);
        Assert.That(await Host.ScalarAsync(
            """
            SELECT count(*) FROM wallet_lots r JOIN wallet_ledger e ON e.id = r.ledger_id AND e.kind = 'refund_reversal'
            JOIN wallet_purchases p ON p.checkout_session_id = @s JOIN wallet_lots own ON own.id = p.lot_id
            WHERE r.user_id = @user AND r.remaining = 1000 AND r.expires_at = own.expires_at
            """, new { s = sprint.CheckoutSessionId, user }), Is.EqualTo(1), "the tokens come back with the pack's expiry");
    }

    [Test]
    public async Task A_failed_refund_of_a_spent_pack_forgives_the_debt_before_giving_tokens_back()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);
        Assert.That((await Host.DebitAsync(user, 70_000, WalletHost.NewKey())).Status, Is.EqualTo(System.Net.HttpStatusCode.OK));
        await Host.PublishAsync(WalletHost.Refunded(purchase, 500));
        await SettledAsync(user, 0);
        Assert.That(await Outstanding(purchase), Is.EqualTo(70_000), "the spent tokens are owed");

        await Host.PublishAsync(Failed(purchase));
        await SettledAsync(user, 30_000);
        Assert.That(await Outstanding(purchase), Is.Zero);
    }

    [Test]
    public async Task The_failure_arriving_before_the_refund_it_undoes_takes_nothing_at_all()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);
        await Host.PublishAsync(Failed(purchase));
        await Task.Delay(500);
        await Host.PublishAsync(WalletHost.Refunded(purchase, 500)); // older: the refund before it failed
        await SettledAsync(user, 100_000);
        Assert.That((await Host.TransactionsAsync(user)).Select(t => t.GetProperty("kind").GetString()), Is.EqualTo(new[] { "purchase" }));
    }

    [Test]
    public async Task A_chargeback_won_gives_back_what_it_took_but_not_what_a_refund_took_and_a_late_copy_reopens_nothing()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);
        await Host.PublishAsync(WalletHost.Refunded(purchase, 100)); // a fifth refunded
        await SettledAsync(user, 80_000);
        var disputed = WalletHost.Disputed(purchase);
        await Host.PublishAsync(disputed);
        await SettledAsync(user, 0);

        await Host.PublishAsync(WalletHost.DisputeClosed(purchase, "won"));
        await SettledAsync(user, 80_000);
        await Host.PublishAsync(disputed, Guid.NewGuid()); // the chargeback's message again, late
        await SettledAsync(user, 80_000);
    }

    [Test]
    public async Task A_chargeback_lost_keeps_the_pack_and_its_close_alone_takes_it()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);
        await Host.PublishAsync(WalletHost.Disputed(purchase));
        await SettledAsync(user, 0);
        await Host.PublishAsync(WalletHost.DisputeClosed(purchase, "lost"));
        await SettledAsync(user, 0);

        var other = WalletHost.NewUser();
        var second = await BuyAsync(other);
        await Host.PublishAsync(WalletHost.DisputeClosed(second, "lost")); // the opening's message not here (yet)
        await SettledAsync(other, 0);
        await Host.PublishAsync(WalletHost.DisputeClosed(second, "won"), Guid.NewGuid()); // a closed chargeback does not change
        await SettledAsync(other, 0);
    }
}
