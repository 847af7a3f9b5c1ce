using Billing.ServiceDefaults.Stripe;
using System.Net;
using Npgsql;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>The catalog's Pro plan has a 14-day trial: once per user.</summary>
[TestFixture]
public class Starting_a_checkout_with_a_trial
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    /// <summary>The user's monthly checkout through Billing (Pro unless said), paid on the hosted page (an empty card: none
    /// given): Stripe's subscription.</summary>
    internal static async Task<Subscription> CheckoutAndPayAsync(string user, string planId = "pro", string card = "4242424242424242")
    {
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/checkout", new { planId, interval = "month" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var sessionId = body.GetProperty("checkoutSessionId").GetString()!;
        using var paid = await Host.PayAsync(sessionId, card);
        Assert.That((int)paid.StatusCode, Is.EqualTo(303), await paid.Content.ReadAsStringAsync());
        var session = await new global::Stripe.Checkout.SessionService(Host.Stripe).GetAsync(sessionId);
        return await new SubscriptionService(Host.Stripe).GetAsync(session.SubscriptionId);
    }

    private static async Task<Subscription> EndAsync(Subscription subscription) =>
        await new SubscriptionService(Host.Stripe).CancelAsync(subscription.Id);

    [Test]
    public async Task A_first_subscription_starts_with_the_trial()
    {
        var subscription = await CheckoutAndPayAsync(SubscriptionsHost.NewUser());
        Assert.That(subscription.Status, Is.EqualTo("trialing"));
    }

    [Test]
    public async Task A_user_who_had_a_subscription_gets_no_second_trial()
    {
        var user = SubscriptionsHost.NewUser();
        var first = await Host.SubscribeAsync(user, "pro", "month");
        var ended = await EndAsync(first);
        await SubscriptionsHost.SaveLocalAsync(user, "pro", ended, sequence: 2, r => r with { EndedAt = DateTimeOffset.UtcNow });

        var second = await CheckoutAndPayAsync(user);

        Assert.That(second.Status, Is.EqualTo("active"));
    }

    [Test]
    public async Task A_customer_whose_past_subscription_Billing_never_stored_gets_no_second_trial()
    {
        var user = SubscriptionsHost.NewUser();
        var first = await Host.SubscribeAsync(user, "pro", "month");
        await EndAsync(first);
        await using (var connection = new NpgsqlConnection(SubscriptionsHost.ConnectionString))
        {
            await connection.OpenAsync();
            await using var delete = new NpgsqlCommand("DELETE FROM subscriptions WHERE subscription_id = @id", connection);
            delete.Parameters.AddWithValue("id", first.Id);
            await delete.ExecuteNonQueryAsync();
        }

        var second = await CheckoutAndPayAsync(user);

        Assert.That(second.Status, Is.EqualTo("active"));
    }
}

/// <summary>
/// A trial is the plan's own: an upgrade during it keeps at most the new plan's trial (counted from the trial's start).
/// Business and Max have none, so upgrading a Pro trial ends it and charges the new price in full now.
/// </summary>
[TestFixture]
public class Upgrading_during_a_trial
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    private static async Task<(string User, Subscription Trialing)> TrialingProAsync()
    {
        var user = SubscriptionsHost.NewUser();
        var trialing = await Starting_a_checkout_with_a_trial.CheckoutAndPayAsync(user);
        Assert.That(trialing.Status, Is.EqualTo("trialing"));
        await SubscriptionsHost.SaveLocalAsync(user, "pro", trialing, sequence: 1);
        return (user, trialing);
    }

    [Test]
    public async Task To_a_plan_without_a_trial_ends_the_trial_and_charges_the_new_price_now()
    {
        var (user, trialing) = await TrialingProAsync();

        var (_, preview) = await Host.GetAsync(user, "/api/subscriptions/me/change-preview?planId=max&interval=month");
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "max", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("upgrade"));
        var after = await new SubscriptionService(Host.Stripe).GetAsync(trialing.Id);
        Assert.That((after.Status, after.PlanItem().Price.LookupKey), Is.EqualTo(("active", "max_month")), "no free Max for the rest of Pro's trial");
        var invoices = await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = trialing.Id, Limit = 100 });
        var charged = invoices.Data.Single(i => i.BillingReason == "subscription_update");
        Assert.That((charged.AmountPaid, charged.Status), Is.EqualTo((5000L, "paid")));
        Assert.That((preview.GetProperty("kind").GetString(), preview.GetProperty("amountDueNow").GetInt64()), Is.EqualTo(("upgrade", 5000L)), preview.ToString());
    }

    [Test]
    public async Task Declined_leaves_the_trial_and_the_plan_as_they_were()
    {
        var (user, trialing) = await TrialingProAsync();
        await Host.SetCardAsync(trialing.CustomerId, "4000000000000002");

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired), body.ToString());
        var after = await new SubscriptionService(Host.Stripe).GetAsync(trialing.Id);
        Assert.That((after.Status, after.PlanItem().Price.LookupKey, after.TrialEnd), Is.EqualTo(("trialing", "pro_month", trialing.TrialEnd)));
    }
}

/// <summary>
/// Lite's trial needs no card (catalog <c>trialRequiresPaymentMethod: false</c>): the checkout collects one only if the
/// customer gives it, and a trial that ends without one ends the subscription instead of billing nobody.
/// </summary>
[TestFixture]
public class A_trial_without_a_card
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    private static async Task<(string User, Subscription Trialing)> StartWithoutCardAsync()
    {
        var user = SubscriptionsHost.NewUser();
        var trialing = await Starting_a_checkout_with_a_trial.CheckoutAndPayAsync(user, "lite", card: "");
        var sessions = await new global::Stripe.Checkout.SessionService(Host.Stripe).ListAsync(
            new global::Stripe.Checkout.SessionListOptions { Subscription = trialing.Id });
        Assert.That(sessions.Data.Single().PaymentMethodCollection, Is.EqualTo("if_required"));
        Assert.That((trialing.Status, trialing.TrialSettings.EndBehavior.MissingPaymentMethod), Is.EqualTo(("trialing", "cancel")));
        await SubscriptionsHost.SaveLocalAsync(user, "lite", trialing, sequence: 1);
        return (user, trialing);
    }

    [Test]
    public async Task Ends_the_subscription_at_the_trials_end_when_no_card_was_added()
    {
        var (_, trialing) = await StartWithoutCardAsync();

        await Hosts.AdvanceSimulatorAsync(trialing.TrialEnd!.Value.AddMinutes(1));

        var ended = await new SubscriptionService(Host.Stripe).GetAsync(trialing.Id);
        Assert.That(ended.Status, Is.EqualTo("canceled"));
        var invoices = await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = trialing.Id });
        Assert.That(invoices.Data.Where(i => i.AmountDue > 0), Is.Empty, "nothing billed");
    }

    [Test]
    public async Task Is_charged_at_the_trials_end_once_a_card_was_added()
    {
        var (_, trialing) = await StartWithoutCardAsync();
        await Host.SetCardAsync(trialing.CustomerId, "4242424242424242"); // as the customer portal would

        await Hosts.AdvanceSimulatorAsync(trialing.TrialEnd!.Value.AddMinutes(1));

        var renewed = await new SubscriptionService(Host.Stripe).GetAsync(trialing.Id);
        Assert.That(renewed.Status, Is.EqualTo("active"));
        var invoice = await new InvoiceService(Host.Stripe).GetAsync(renewed.LatestInvoiceId);
        Assert.That((invoice.Status, invoice.AmountPaid), Is.EqualTo(("paid", 200L)));
    }

    [Test]
    public async Task An_upgrade_that_would_charge_now_asks_for_a_card_first_and_changes_nothing()
    {
        var (user, trialing) = await StartWithoutCardAsync();

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("payment_method_required"));
        var after = await new SubscriptionService(Host.Stripe).GetAsync(trialing.Id);
        Assert.That((after.Status, after.PlanItem().Price.LookupKey, after.TrialEnd), Is.EqualTo(("trialing", "lite_month", trialing.TrialEnd)));
    }

    [Test]
    public async Task An_upgrade_that_keeps_the_trial_needs_no_card()
    {
        var (user, trialing) = await StartWithoutCardAsync();

        // Pro's 14-day trial is longer than what is left of Lite's 7: the trial goes on, nothing is charged now.
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var after = await new SubscriptionService(Host.Stripe).GetAsync(trialing.Id);
        Assert.That((after.Status, after.PlanItem().Price.LookupKey, after.TrialEnd), Is.EqualTo(("trialing", "pro_month", trialing.TrialEnd)));
    }
}
