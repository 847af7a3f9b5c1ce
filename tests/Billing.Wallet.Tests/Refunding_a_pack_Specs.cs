namespace Billing.Wallet.Tests;

public sealed class Refunding_a_pack
{
    private static WalletHost Host => Hosts.Packs;

    private static Task<Contracts.TokenPackPurchased> BuyAsync(string user) => Host.BuyAsync(user);

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
    public async Task A_chargeback_takes_back_what_an_earlier_partial_refund_left()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);
        await Host.PublishAsync(WalletHost.Refunded(purchase, 100)); // a fifth refunded first
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 80_000);

        var disputed = new Contracts.PaymentDisputed
        {
            UserId = user, PaymentId = purchase.PaymentIntentId!, Kind = "token_pack", DisputeId = "dp_" + Guid.NewGuid().ToString("N")[..14],
            ChargeId = "ch_" + purchase.PaymentIntentId![3..], PaymentIntentId = purchase.PaymentIntentId, Amount = purchase.Amount,
            AmountDisputed = 400, Currency = "usd", Reason = "fraudulent", PackId = purchase.PackId, PackTokens = purchase.Tokens,
            OccurredAt = DateTimeOffset.UtcNow, StripeEventId = "evt_" + Guid.NewGuid().ToString("N")[..14],
        };
        await Host.PublishAsync(disputed);
        await Host.PublishAsync(disputed, Guid.NewGuid()); // published twice
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 0);
        await Task.Delay(500);

        var refunds = (await Host.TransactionsAsync(user)).Where(i => i.GetProperty("kind").GetString() == "refund").ToList();
        Assert.That(refunds.Select(r => r.GetProperty("amount").GetInt64()), Is.EqualTo(new[] { -80_000L, -20_000L }));
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

    [Test]
    public async Task A_refund_of_an_expired_pack_takes_back_only_the_tokens_that_were_spent_not_those_that_expired()
    {
        var user = WalletHost.NewUser();
        var sprint = WalletHost.Purchased(user, "sprint", tokens: 1000, amount: 100); // expires after 30 days
        await Host.PublishAsync(sprint);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 1000);
        await Host.GrantAsync(user, 1000);                                              // never expires
        Assert.That((await Host.DebitAsync(user, 300, WalletHost.NewKey())).Status, Is.EqualTo(System.Net.HttpStatusCode.OK));

        Host.Clock.Advance(TimeSpan.FromDays(31));
        try
        {
            Assert.That(await Host.BalanceAsync(user), Is.EqualTo(1000), "the pack's other 700 expired");
            await Host.PublishAsync(WalletHost.Refunded(sprint, 100));
            await WalletHost.EventuallyAsync(async () => (await Host.TransactionsAsync(user)).Any(t => t.GetProperty("kind").GetString() == "refund"));

            var refund = (await Host.TransactionsAsync(user))[0];
            Assert.That((refund.GetProperty("requested").GetInt64(), refund.GetProperty("amount").GetInt64(), refund.GetProperty("shortfall").GetInt64()),
                Is.EqualTo((300L, -300L, 0L)), "the 300 spent, not the 700 that expired");
            Assert.That(await Host.BalanceAsync(user), Is.EqualTo(700), "the never-expiring grant keeps what the refund does not cover");
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromDays(-31));
        }
    }

    [Test]
    public async Task A_refund_does_not_take_tokens_that_ran_out_before_it_though_the_expiry_job_has_not_run_yet()
    {
        // The pack's 100,000 tokens are spent; a grant of 1,000 ran out yesterday, but nothing has swept it yet, so the
        // stored balance still counts it. The refund takes nothing from it: the whole pack is owed.
        var user = WalletHost.NewUser();
        var pack = WalletHost.Purchased(user) with { ExpiresAfterDays = 0 };
        await Host.PublishAsync(pack);
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 100_000);
        Assert.That((await Host.DebitAsync(user, 100_000, WalletHost.NewKey())).Status, Is.EqualTo(System.Net.HttpStatusCode.OK));
        await Host.GrantAsync(user, 1000, expiresAt: Host.Clock.GetUtcNow().AddDays(1));

        Host.Clock.Advance(TimeSpan.FromDays(2)); // no wallet read from here on: a read would expire the grant first
        try
        {
            await Host.PublishAsync(WalletHost.Refunded(pack, pack.Amount));
            await WalletHost.EventuallyAsync(async () => await Host.ScalarAsync(
                "SELECT count(*) FROM wallet_ledger WHERE user_id = @user AND kind = 'refund'", new { user }) == 1);

            Assert.That(await Host.ScalarAsync("SELECT -amount FROM wallet_ledger WHERE user_id = @user AND kind = 'refund'", new { user }),
                Is.Zero, "the expired grant is not the refund's to take");
            Assert.That(await Host.ScalarAsync("SELECT clawback_outstanding FROM wallet_purchases WHERE checkout_session_id = @s", new { s = pack.CheckoutSessionId }),
                Is.EqualTo(100_000), "the pack's tokens are owed: returns of the spent ones pay it");
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromDays(-2));
        }
    }

    [Test]
    public async Task A_refund_that_waited_for_a_grant_takes_the_granted_tokens_from_their_lot()
    {
        var user = WalletHost.NewUser();
        var purchase = await BuyAsync(user);
        Assert.That((await Host.DebitAsync(user, 100_000, WalletHost.NewKey())).Status, Is.EqualTo(System.Net.HttpStatusCode.OK), "the pack spent");

        // A grant of 100,000 expiring tokens holds the wallet's row lock when the refund of the spent pack arrives, so the
        // refund waits for it and then must see the grant's lot as well as its balance.
        await using var granting = new Npgsql.NpgsqlConnection(Host.ConnectionString);
        await granting.OpenAsync();
        await using (var grant = await granting.BeginTransactionAsync())
        {
            await Execute(granting, grant, "SELECT 1 FROM wallets WHERE user_id = @user FOR UPDATE", user);
            await Execute(granting, grant, """
                WITH w AS (UPDATE wallets SET balance = balance + 100000 WHERE user_id = @user RETURNING balance),
                     entry AS (
                         INSERT INTO wallet_ledger (user_id, kind, amount, balance_after, reference, reason, expires_at, created_at)
                         SELECT @user, 'grant', 100000, w.balance, 'race', 'promotion', now() + interval '30 days', now() FROM w
                         RETURNING id)
                INSERT INTO wallet_lots (user_id, ledger_id, reference, granted, remaining, expires_at)
                SELECT @user, entry.id, 'race', 100000, 100000, now() + interval '30 days' FROM entry
                """, user);

            await Host.PublishAsync(WalletHost.Refunded(purchase, 500));
            await WalletHost.EventuallyAsync(async () => await Host.ScalarAsync(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") > 0);
            await grant.CommitAsync();
        }

        await WalletHost.EventuallyAsync(async () => (await Host.TransactionsAsync(user)).Any(t => t.GetProperty("kind").GetString() == "refund"));
        Assert.That(await Host.BalanceAsync(user), Is.Zero, "the refund took the 100,000 the wallet held");
        Assert.That(await Host.ScalarAsync("SELECT COALESCE(SUM(remaining), 0) FROM wallet_lots WHERE user_id = @user", new { user }), Is.Zero,
            "no expiring tokens are left behind in a lot that the balance no longer holds");
        var verify = await WalletHost.BodyAsync(await Host.Admin.GetAsync("/api/admin/wallet/verify"));
        Assert.That(verify.GetProperty("mismatches").GetArrayLength(), Is.Zero, verify.ToString());
    }

    private static async Task Execute(Npgsql.NpgsqlConnection connection, Npgsql.NpgsqlTransaction tx, string sql, string user)
    {
        await using var command = new Npgsql.NpgsqlCommand(sql, connection, tx);
        command.Parameters.AddWithValue("user", user);
        await command.ExecuteNonQueryAsync();
    }
}
