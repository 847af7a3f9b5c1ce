namespace Billing.Client.Tests;

/// <summary>The 402 codes that need a failed payment or a token-paid meter, each as its own exception type.</summary>
[TestFixture]
[NonParallelizable]
public class Refused_after_a_failed_renewal
{
    [Test]
    public async Task Past_due_beyond_the_grace_period_is_a_PaymentPastDueException()
    {
        var user = Stack.NewUser();
        // 4000 0000 0000 0341 pays now and fails at the renewal.
        await Stack.SubscribeAsync(user, "pro", card: "4000000000000341");
        var billing = Stack.Client();
        Assert.That((await billing.ConsumeAsync(user, "ai.generation")).Allowed, Is.True);

        // A month on the renewal fails (past due, 1 day of grace); two days later access is suspended.
        await Stack.AdvanceClockAsync(TimeSpan.FromDays(32));
        await Stack.AdvanceClockAsync(TimeSpan.FromDays(2));

        PaymentPastDueException? refused = null;
        await Stack.Eventually(async () =>
        {
            var outcome = await billing.TryConsumeAsync(user, "ai.generation");
            if (outcome.Refusal?.Code == BillingRefusalCodes.PaymentPastDue)
            {
                refused = Assert.ThrowsAsync<PaymentPastDueException>(() => billing.ConsumeAsync(user, "ai.generation"));
                return true;
            }
            return false;
        }, "payment_past_due", TimeSpan.FromSeconds(45));
        Assert.That(refused!.Meter, Is.EqualTo("ai.generation"));
    }
}

/// <summary>The learning community's catalog: 3 free AI uploads a month, then purchased tokens (1,500 per upload).</summary>
[TestFixture]
[NonParallelizable]
[Category("seed")]
[Category("seed-learning-community")]
public class Refused_for_want_of_tokens
{
    [Test]
    public async Task A_spent_free_allowance_with_an_empty_wallet_is_an_InsufficientTokensException()
    {
        var user = Stack.NewUser();
        var billing = Stack.Client();
        var quota = await billing.ConsumeAsync(user, "ai.upload", quantity: 3);
        Assert.That((quota.Source, quota.Remaining), Is.EqualTo((ConsumeSources.Quota, (long?)0)));

        var refused = Assert.ThrowsAsync<InsufficientTokensException>(() => billing.ConsumeAsync(user, "ai.upload"));

        Assert.That(refused!.Code, Is.EqualTo("insufficient_tokens"));
        Assert.That((refused.Balance, refused.Requested), Is.EqualTo(((long?)0, (long?)1500)));
        Assert.That(refused.Upgrade, Is.True, "Community Pro has a larger allowance");
    }
}
