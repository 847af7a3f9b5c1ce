using System.Diagnostics;
using System.Net;

namespace Billing.Wallet.Tests;

public sealed class Spending_tokens_concurrently
{
    private static WalletHost Host => Hosts.Packs;

    [Test]
    public async Task A_thousand_debits_of_7_on_a_balance_of_700_let_exactly_100_through()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 700);
        var keys = Enumerable.Range(0, 1000).Select(i => $"{user}-debit-{i}").ToList();

        var watch = Stopwatch.StartNew();
        var answers = await Task.WhenAll(keys.Select(key => Host.DebitAsync(user, 7, key)));
        watch.Stop();
        TestContext.Out.WriteLine($"1,000 concurrent debits took {watch.ElapsedMilliseconds} ms");

        Assert.That(answers.Count(a => a.Status == HttpStatusCode.OK), Is.EqualTo(100));
        Assert.That(answers.Count(a => (int)a.Status == 402), Is.EqualTo(900));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(0));
        Assert.That(await Host.ScalarAsync("SELECT COALESCE(SUM(amount), 0) FROM wallet_ledger WHERE user_id = @user", new { user }), Is.EqualTo(0));
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM wallet_ledger WHERE user_id = @user AND kind = 'debit'", new { user }), Is.EqualTo(100));
    }

    [Test]
    public async Task The_same_thousand_debits_each_sent_twice_under_its_key_still_let_exactly_100_through()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 700);
        var keys = Enumerable.Range(0, 1000).Select(i => $"{user}-debit-{i}").ToList();

        var watch = Stopwatch.StartNew();
        var answers = await Task.WhenAll(keys.Concat(keys).Select(key => Host.DebitAsync(user, 7, key)));
        watch.Stop();
        TestContext.Out.WriteLine($"2,000 concurrent debits (1,000 keys, each twice) took {watch.ElapsedMilliseconds} ms");

        var byKey = keys.Select((key, i) => (First: answers[i], Second: answers[i + 1000])).ToList();
        Assert.That(byKey.Count(p => p.First.Status == HttpStatusCode.OK), Is.EqualTo(100));
        Assert.That(byKey.All(p => p.First.Status == p.Second.Status), Is.True, "both copies of a key get the same answer");
        Assert.That(byKey.Where(p => p.First.Status == HttpStatusCode.OK)
            .All(p => p.First.Body.GetProperty("transactionId").GetString() == p.Second.Body.GetProperty("transactionId").GetString()), Is.True);
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(0));
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM wallet_ledger WHERE user_id = @user AND kind = 'debit'", new { user }), Is.EqualTo(100));
        Assert.That(await Host.ScalarAsync("SELECT COALESCE(SUM(amount), 0) FROM wallet_ledger WHERE user_id = @user", new { user }), Is.EqualTo(0));
    }

    [Test]
    public async Task A_retried_debit_returns_the_first_answer_and_spends_once()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 100);
        var key = WalletHost.NewKey();

        var first = await Host.DebitAsync(user, 30, key, "consumption-42");
        var again = await Host.DebitAsync(user, 30, key, "consumption-42");

        Assert.That((int)first.Status, Is.EqualTo(200));
        Assert.That(first.Body.GetProperty("debited").GetBoolean(), Is.True);
        Assert.That(first.Body.GetProperty("balance").GetInt64(), Is.EqualTo(70));
        Assert.That(again.Body.ToString(), Is.EqualTo(first.Body.ToString()));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(70));
        Assert.That((await Host.TransactionsAsync(user))[0].GetProperty("reference").GetString(), Is.EqualTo("consumption-42"));
    }

    [Test]
    public async Task A_debit_larger_than_the_balance_answers_402_with_the_balance()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 10);
        var (status, body) = await Host.DebitAsync(user, 11, WalletHost.NewKey());
        Assert.That((int)status, Is.EqualTo(402));
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("insufficient_tokens"));
        Assert.That(body.GetProperty("balance").GetInt64(), Is.EqualTo(10));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(10));
    }

    [Test]
    public async Task The_same_key_for_another_user_or_amount_answers_409()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 100);
        var key = WalletHost.NewKey();
        Assert.That((int)(await Host.DebitAsync(user, 5, key)).Status, Is.EqualTo(200));

        var otherAmount = await Host.DebitAsync(user, 6, key);
        var otherUser = await Host.DebitAsync(WalletHost.NewUser(), 5, key);

        Assert.That((int)otherAmount.Status, Is.EqualTo(409));
        Assert.That(otherAmount.Body.GetProperty("code").GetString(), Is.EqualTo("idempotency_conflict"));
        Assert.That((int)otherUser.Status, Is.EqualTo(409));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(95));
    }
}
