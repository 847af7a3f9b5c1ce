namespace Billing.Wallet.Tests;

/// <summary>
/// A pack's claw-back follows its payment both ways: a refund that fails (the card was closed) or a chargeback the merchant
/// wins gives back what it took — what was still owed is forgiven first — and messages arriving in any order end in the
/// same place.
/// </summary>
public sealed class Giving_back_a_refund
{
    private static WalletHost Host => Hosts.Packs;

    private static Task<Contracts.TokenPackPurchased> BuyAsync(string user) => Host.BuyAsync(user);

    private static Contracts.PaymentRefunded Failed(Contracts.TokenPackPurchased purchase, long stillRefunded = 0, int undone = 1) =>
        WalletHost.Refunded(purchase, stillRefunded) with { RefundsUndone = undone };

    /// <summary>A grant of <paramref name="neverExpiring"/> tokens, then a Sprint pack (1,000 tokens, expiring after 30 days).</summary>
    private static async Task<Contracts.TokenPackPurchased> GrantAndBuySprintAsync(string user, long neverExpiring)
    {
        await Host.GrantAsync(user, neverExpiring);
        var sprint = WalletHost.Purchased(user, "sprint", tokens: 1000, amount: 100);
        await Host.PublishAsync(sprint);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == neverExpiring + 1000);
        return sprint;
    }

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
    public async Task Tokens_given_back_return_to_the_pack_s_own_lot_and_a_second_refund_takes_them_from_it_again()
    {
        var user = WalletHost.NewUser();
        var sprint = await GrantAndBuySprintAsync(user, 500);
        await Host.PublishAsync(WalletHost.Refunded(sprint, 100));
        await SettledAsync(user, 500);

        await Host.PublishAsync(Failed(sprint));
        await SettledAsync(user, 1500);
        const string OwnLot = "SELECT l.remaining FROM wallet_lots l JOIN wallet_purchases p ON p.lot_id = l.id WHERE p.checkout_session_id = @s";
        Assert.That(await Host.ScalarAsync(OwnLot, new { s = sprint.CheckoutSessionId }), Is.EqualTo(1000), "back in the pack's lot, with its expiry");
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM wallet_lots WHERE user_id = @user", new { user }), Is.EqualTo(1), "no other lot");

        await Host.PublishAsync(WalletHost.Refunded(sprint, 100) with { RefundsUndone = 1 }); // refunded again
        await SettledAsync(user, 500);
        Assert.That(await Host.ScalarAsync(OwnLot, new { s = sprint.CheckoutSessionId }), Is.Zero, "taken from the pack's lot again, not from the grant");
    }

    [Test]
    public async Task Tokens_taken_from_tokens_that_never_expire_come_back_never_expiring_though_the_pack_has_expired()
    {
        var user = WalletHost.NewUser();
        var sprint = await GrantAndBuySprintAsync(user, 1000);
        Assert.That((await Host.DebitAsync(user, 1000, WalletHost.NewKey())).Status, Is.EqualTo(System.Net.HttpStatusCode.OK), "the pack's tokens, soonest-expiring first");
        await Host.PublishAsync(WalletHost.Refunded(sprint, 100));
        await SettledAsync(user, 0); // the refund took the 1,000 that never expire

        Host.Clock.Advance(TimeSpan.FromDays(40));
        try
        {
            await Host.PublishAsync(Failed(sprint));
            await SettledAsync(user, 1000);
            Assert.That(await Host.ScalarAsync("SELECT count(*) FROM wallet_ledger WHERE user_id = @user AND kind = 'expiry'", new { user }), Is.Zero,
                "they come back as they were: never expiring");
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromDays(-40));
        }
    }

    [Test]
    public async Task What_a_previous_version_took_back_stays_taken_when_a_chargeback_is_won()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);
        await Host.PublishAsync(WalletHost.Refunded(purchase, 250));
        await SettledAsync(user, 50_000);
        // As a replica of the previous version leaves the purchase after its claw-back (during the rollout): no state.
        await Host.ScalarAsync(
            "UPDATE wallet_purchases SET clawback_moves = 0, refund_undone = 0, refund_amount = 0, refund_tokens = 0 WHERE checkout_session_id = @s",
            new { s = purchase.CheckoutSessionId });

        await Host.PublishAsync(WalletHost.Disputed(purchase));
        await SettledAsync(user, 0);
        await Host.PublishAsync(WalletHost.DisputeClosed(purchase, "won"));
        await SettledAsync(user, 50_000);
    }

    [Test]
    public async Task An_inquiry_that_closed_does_not_stop_a_later_chargeback()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);
        await Host.PublishAsync(WalletHost.DisputeClosed(purchase, "warning_closed"));
        await SettledAsync(user, 100_000);
        await Host.PublishAsync(WalletHost.Disputed(purchase));
        await SettledAsync(user, 0);
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
