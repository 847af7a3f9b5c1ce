using System.Diagnostics;

namespace Billing.EndToEnd.Tests;

/// <summary>The operator's commands of the run script, against the running test stack.</summary>
[TestFixture]
[NonParallelizable]
public class The_operator_commands
{
    private static async Task<(int ExitCode, string Output)> BillingAsync(params string[] args)
    {
        var start = new ProcessStartInfo("bash", [Path.Combine(TestEnvironment.Repo, "deploy", "billing"), .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["BILLING_PROFILE"] = "test";
        using var process = Process.Start(start)!;
        var output = await process.StandardOutput.ReadToEndAsync();
        var errors = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, output + errors);
    }

    [TearDown]
    public Task DeliverAgain() => Simulator.DeliverWebhooksAsync(true);

    [Test]
    public async Task Verify_finds_a_subscription_changed_behind_Billings_back_and_reconcile_heals_it()
    {
        var user = "e2e-ops-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "month");
        await Eventually.GetAsync(() => BillingAsync("verify"), r => r.ExitCode == 0, "verify to find no difference", TimeSpan.FromSeconds(60));

        // Cancel in Stripe while no webhook gets through: Billing cannot know.
        await Simulator.DeliverWebhooksAsync(false);
        var subscription = await StripeView.SubscriptionOfAsync(user);
        using var stripe = new HttpClient { BaseAddress = TestEnvironment.SimulatorUrl };
        stripe.DefaultRequestHeaders.Authorization = new("Bearer", "sk_test_e2e");
        using (var response = await stripe.PostAsync($"/v1/subscriptions/{subscription.GetProperty("id").GetString()}",
            new FormUrlEncodedContent(new Dictionary<string, string> { ["cancel_at_period_end"] = "true" })))
        {
            response.EnsureSuccessStatusCode();
        }
        var (exit, output) = await BillingAsync("verify");
        Assert.That(exit, Is.EqualTo(1), output);
        Assert.That(output, Does.Contain("cancelAtPeriodEnd").And.Contain(user));

        await Simulator.DeliverWebhooksAsync(true);
        var (reconciled, report) = await BillingAsync("reconcile");
        Assert.That(reconciled, Is.Zero, report);
        Assert.That(report, Does.Match("[1-9][0-9]* recovered"));
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
        await Eventually.GetAsync(() => BillingAsync("verify"), r => r.ExitCode == 0, "verify to find no difference after reconciling", TimeSpan.FromSeconds(60));
    }

    [Test]
    public async Task Verify_finds_a_subscription_Stripe_bills_that_Billing_never_heard_of()
    {
        var user = "e2e-ops-unknown-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        await Simulator.DeliverWebhooksAsync(false);
        var (_, checkout, _) = await api.PostAsync("/api/subscriptions/checkout", new { planId = "pro", interval = "month" });
        Assert.That((await Simulator.PayAsync(checkout.GetProperty("checkoutSessionId").GetString()!)).Status, Is.EqualTo(HttpStatusCode.SeeOther));

        var (exit, output) = await BillingAsync("verify");
        Assert.That(exit, Is.EqualTo(1), output);
        Assert.That(output, Does.Contain(user).And.Contain("live"));

        await Simulator.DeliverWebhooksAsync(true);
        var (reconciled, report) = await BillingAsync("reconcile");
        Assert.That(reconciled, Is.Zero, report);
        await Eventually.GetAsync(() => BillingAsync("verify"), r => r.ExitCode == 0, "verify to find no difference after reconciling", TimeSpan.FromSeconds(60));
    }
}
