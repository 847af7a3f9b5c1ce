using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Billing.ServiceDefaults.Stripe;
using Stripe;
using Stripe.Billing;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>
/// A plan whose meter bills overage (<c>overage: "bill"</c>) carries a metered Stripe price beside its plan price, so that
/// the meter events Usage reports end up on an invoice; plan changes keep that overage billed exactly once.
/// </summary>
[TestFixture]
public class Billing_overage
{
    private const string MaxOverageMonth = "max_month_overage_max_generations";
    private const string MaxOverageYear = "max_year_overage_max_generations";

    private static SubscriptionsHost Host => Hosts.Subscriptions;

    private static Task<Subscription> StripeAsync(string subscriptionId) => new SubscriptionService(Host.Stripe).GetAsync(subscriptionId);

    private static string[] LookupKeys(Subscription s) => s.Items.Data.Select(i => i.Price.LookupKey).Order(StringComparer.Ordinal).ToArray();

    private static async Task<List<Invoice>> InvoicesAsync(string subscriptionId) =>
        (await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = subscriptionId, Limit = 100 })).Data;

    /// <summary>Subscribes through Billing's own checkout and the hosted page; returns Stripe's subscription.</summary>
    private static async Task<Subscription> CheckoutAsync(string user, string planId, string interval)
    {
        var (started, checkout) = await Host.PostAsync(user, "/api/subscriptions/checkout", new { planId, interval });
        Assert.That(started, Is.EqualTo(HttpStatusCode.OK), checkout.ToString());
        var sessionId = checkout.GetProperty("checkoutSessionId").GetString()!;
        using (var paid = await Host.PayAsync(sessionId))
        {
            Assert.That((int)paid.StatusCode, Is.EqualTo(303), await paid.Content.ReadAsStringAsync());
        }
        var session = await new global::Stripe.Checkout.SessionService(Host.Stripe).GetAsync(sessionId);
        var subscription = await StripeAsync(session.SubscriptionId);
        await SubscriptionsHost.SaveLocalAsync(user, planId, subscription, sequence: 1);
        return subscription;
    }

    /// <summary>What Usage's OverageReporter sends for overage of the Max plan's meter.</summary>
    private static Task ReportOverageAsync(Subscription s, long quantity) =>
        new MeterEventService(Host.Stripe).CreateAsync(new MeterEventCreateOptions
        {
            EventName = "max_generations",
            Identifier = Guid.NewGuid().ToString(),
            Payload = new Dictionary<string, string> { ["stripe_customer_id"] = s.CustomerId, ["value"] = quantity.ToString(System.Globalization.CultureInfo.InvariantCulture) },
        });

    private static async Task<JsonElement> ChangeAsync(string user, string planId, string interval, string kind)
    {
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId, interval });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo(kind));
        return body;
    }

    [Test]
    public async Task Checkout_adds_the_metered_price_and_the_first_invoice_bills_only_the_plan()
    {
        var subscription = await CheckoutAsync(SubscriptionsHost.NewUser(), "max", "month");

        Assert.That(LookupKeys(subscription), Is.EqualTo(new[] { "max_month", MaxOverageMonth }));
        Assert.That(subscription.PlanItem().Price.LookupKey, Is.EqualTo("max_month"));
        Assert.That(subscription.MeteredItems().Single().Price.Recurring.Meter, Is.Not.Null.And.Not.Empty);
        Assert.That((await InvoicesAsync(subscription.Id)).Single().AmountPaid, Is.EqualTo(5000));
    }

    [Test]
    public async Task The_renewal_bills_the_periods_overage_once()
    {
        var subscription = await CheckoutAsync(SubscriptionsHost.NewUser(), "max", "month");
        await ReportOverageAsync(subscription, 7);

        await Hosts.AdvanceSimulatorAsync(subscription.PlanItem().CurrentPeriodEnd);
        await Hosts.AdvanceSimulatorAsync((await StripeAsync(subscription.Id)).PlanItem().CurrentPeriodEnd);

        var renewals = (await InvoicesAsync(subscription.Id)).Where(i => i.BillingReason == "subscription_cycle").OrderBy(i => i.Created).ToList();
        Assert.That(renewals.Select(i => i.AmountPaid), Is.EqualTo(new[] { 5000L + 7 * 2, 5000L }), "7 units at 2 cents, on the first renewal only");
    }

    [Test]
    public async Task The_upcoming_invoice_shows_the_next_period_and_the_overage_so_far()
    {
        var user = SubscriptionsHost.NewUser();
        var (none, problem) = await Host.GetAsync(user, "/api/subscriptions/me/upcoming-invoice");
        Assert.That((none, problem.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.NotFound, "no_subscription")));
        var subscription = await CheckoutAsync(user, "max", "month");
        await ReportOverageAsync(subscription, 7);
        await Hosts.AdvanceSimulatorAsync(subscription.PlanItem().CurrentPeriodStart.AddDays(2));

        var (status, upcoming) = await Host.GetAsync(user, "/api/subscriptions/me/upcoming-invoice");

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), upcoming.ToString());
        Assert.That((upcoming.GetProperty("amountDue").GetInt64(), upcoming.GetProperty("currency").GetString()), Is.EqualTo((5000L + 14, "usd")));
        Assert.That(upcoming.GetProperty("billedAt").GetDateTimeOffset(), Is.EqualTo(new DateTimeOffset(subscription.PlanItem().CurrentPeriodEnd, TimeSpan.Zero)));
        var lines = upcoming.GetProperty("lines").EnumerateArray()
            .Select(l => (l.GetProperty("kind").GetString(), l.GetProperty("amount").GetInt64(), l.GetProperty("quantity").GetDecimal())).ToList();
        Assert.That(lines, Is.EquivalentTo(new[] { ("plan", 5000L, 1m), ("overage", 14L, 7m) }));
    }

    [Test]
    public async Task A_subscription_that_ends_at_the_period_end_has_only_its_overage_left_to_pay()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await CheckoutAsync(user, "max", "month");
        var (cancelled, _) = await Host.PostAsync(user, "/api/subscriptions/me/cancel");
        Assert.That(cancelled, Is.EqualTo(HttpStatusCode.OK));
        await SubscriptionsHost.SaveLocalAsync(user, "max", await StripeAsync(subscription.Id), sequence: 2);

        var (nothing, problem) = await Host.GetAsync(user, "/api/subscriptions/me/upcoming-invoice");
        Assert.That((nothing, problem.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.NotFound, "no_upcoming_invoice")), "no renewal, no overage yet");

        await ReportOverageAsync(subscription, 3);
        await Hosts.AdvanceSimulatorAsync(subscription.PlanItem().CurrentPeriodStart.AddDays(1));
        var (status, upcoming) = await Host.GetAsync(user, "/api/subscriptions/me/upcoming-invoice");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), upcoming.ToString());
        Assert.That(upcoming.GetProperty("amountDue").GetInt64(), Is.EqualTo(3 * 2), "the final invoice: the overage, no new period");
        Assert.That(upcoming.GetProperty("lines").EnumerateArray().Select(l => l.GetProperty("kind").GetString()), Is.EqualTo(new[] { "overage" }));
    }

    [Test]
    public async Task An_upgrade_adds_the_metered_price_of_the_new_plan()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await CheckoutAsync(user, "business", "month");
        Assert.That(LookupKeys(subscription), Is.EqualTo(new[] { "business_month" }));

        await ChangeAsync(user, "max", "month", "upgrade");

        Assert.That(LookupKeys(await StripeAsync(subscription.Id)), Is.EqualTo(new[] { "max_month", MaxOverageMonth }));
    }

    [Test]
    public async Task An_upgrade_to_another_interval_bills_the_overage_so_far_and_swaps_the_metered_price()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await CheckoutAsync(user, "max", "month");
        await ReportOverageAsync(subscription, 5);
        await Hosts.AdvanceSimulatorAsync(subscription.PlanItem().CurrentPeriodStart.AddDays(3));

        await ChangeAsync(user, "max", "year", "upgrade");

        Assert.That(LookupKeys(await StripeAsync(subscription.Id)), Is.EqualTo(new[] { "max_year", MaxOverageYear }));
        var upgrade = (await InvoicesAsync(subscription.Id)).Where(i => i.BillingReason != "subscription_create").ToList();
        Assert.That(upgrade.SelectMany(i => i.Lines.Data).Where(l => l.Quantity == 5).Sum(l => l.Amount), Is.EqualTo(10),
            "the 5 units used under the monthly metered price, billed with the upgrade");
    }

    [Test]
    public async Task A_downgrade_to_a_plan_without_overage_waits_for_the_renewal_which_bills_the_last_periods_overage()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await CheckoutAsync(user, "max", "month");

        var body = await ChangeAsync(user, "business", "month", "downgrade");
        Assert.That(body.GetProperty("effectiveAt").GetDateTimeOffset(), Is.EqualTo(new DateTimeOffset(subscription.PlanItem().CurrentPeriodEnd, TimeSpan.Zero)));
        var waiting = await StripeAsync(subscription.Id);
        Assert.That(LookupKeys(waiting), Is.EqualTo(new[] { "max_month", MaxOverageMonth }), "nothing changes before the renewal");
        Assert.That(waiting.ScheduleId, Is.Not.Null.And.Not.Empty, "dropping the metered price now would drop the overage used so far");
        await ReportOverageAsync(subscription, 4);

        await Hosts.AdvanceSimulatorAsync(subscription.PlanItem().CurrentPeriodEnd);

        Assert.That(LookupKeys(await StripeAsync(subscription.Id)), Is.EqualTo(new[] { "business_month" }));
        var renewal = (await InvoicesAsync(subscription.Id)).Single(i => i.BillingReason == "subscription_cycle");
        Assert.That(renewal.AmountPaid, Is.EqualTo(2000 + 4 * 2), "a month of Business and the Max month's 4 units of overage");
    }

    private static async Task<JsonElement> AdminAsync(HttpMethod method, string path)
    {
        using var admin = Host.CreateClient();
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.Admin());
        using var response = await admin.SendAsync(new HttpRequestMessage(method, path));
        var body = await SubscriptionsHost.BodyAsync(response);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        return body;
    }

    private static async Task<List<(string?, string?, string?)>> VerifyDifferencesAsync(string subscriptionId) =>
        (await AdminAsync(HttpMethod.Get, "/api/admin/subscriptions/verify")).GetProperty("differences").EnumerateArray()
            .Where(d => d.GetProperty("subscriptionId").GetString() == subscriptionId)
            .Select(d => (d.GetProperty("field").GetString(), d.GetProperty("billing").GetString(), d.GetProperty("stripe").GetString())).ToList();

    [Test]
    public async Task A_subscription_made_before_its_plan_billed_overage_is_found_and_given_its_metered_price_without_back_billing()
    {
        var user = SubscriptionsHost.NewUser();
        // Made as before plans billed overage: the plan's price only.
        var subscription = await Host.SubscribeAsync(user, "max", "month");
        Assert.That(await VerifyDifferencesAsync(subscription.Id), Is.EqualTo(new[] { ("overageMeters", "max_generations", "") }));
        await ReportOverageAsync(subscription, 3); // before the fix: no item bills it

        var dryRun = await AdminAsync(HttpMethod.Post, "/api/admin/subscriptions/overage-items");
        var listed = dryRun.GetProperty("subscriptions").EnumerateArray().Single(f => f.GetProperty("subscriptionId").GetString() == subscription.Id);
        Assert.That((listed.GetProperty("outcome").GetString(), listed.GetProperty("add")[0].GetString()), Is.EqualTo(("would add", MaxOverageMonth)));
        Assert.That(LookupKeys(await StripeAsync(subscription.Id)), Is.EqualTo(new[] { "max_month" }), "a dry run changes nothing");

        await Hosts.AdvanceSimulatorAsync(subscription.PlanItem().CurrentPeriodStart.AddDays(1));
        var applied = await AdminAsync(HttpMethod.Post, "/api/admin/subscriptions/overage-items?apply=true");
        Assert.That(applied.GetProperty("subscriptions").EnumerateArray().Single(f => f.GetProperty("subscriptionId").GetString() == subscription.Id)
            .GetProperty("outcome").GetString(), Is.EqualTo("added"));
        Assert.That(LookupKeys(await StripeAsync(subscription.Id)), Is.EqualTo(new[] { "max_month", MaxOverageMonth }));
        Assert.That(await VerifyDifferencesAsync(subscription.Id), Is.Empty);
        var again = await AdminAsync(HttpMethod.Post, "/api/admin/subscriptions/overage-items?apply=true");
        Assert.That(again.GetProperty("subscriptions").EnumerateArray().Any(f => f.GetProperty("subscriptionId").GetString() == subscription.Id), Is.False,
            "a second run finds nothing to add");

        await ReportOverageAsync(subscription, 5);
        await Hosts.AdvanceSimulatorAsync(subscription.PlanItem().CurrentPeriodEnd);
        var renewal = (await InvoicesAsync(subscription.Id)).Single(i => i.BillingReason == "subscription_cycle");
        Assert.That(renewal.AmountPaid, Is.EqualTo(5000 + 5 * 2), "the 5 units since the item was added; the 3 before it are not billed in arrears");
    }
}
