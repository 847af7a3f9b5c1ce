using Microsoft.Extensions.Configuration;
using Billing.Subscriptions.Core.Subscriptions;

namespace Billing.Subscriptions.Tests;

[TestFixture]
public class Changing_plans
{
    private static readonly BillingCatalog Catalog = CatalogLoader.Parse("""
        {"freePlan":"free","plans":[{"id":"free","name":"Free"},
          {"id":"starter","name":"Starter","prices":[{"interval":"month","amount":2000},{"interval":"year","amount":20000}]},
          {"id":"pro","name":"Pro","prices":[{"interval":"month","amount":5000},{"interval":"month","intervalCount":3,"amount":14000}]}]}
        """);

    private static PlanChangeKind Classify(string fromPlan, string fromInterval, int fromCount, string toPlan, string toInterval, int toCount = 1)
    {
        var plan = Catalog.FindPlan(toPlan)!;
        return PlanChangeRules.Classify(Catalog, fromPlan, fromInterval, fromCount, plan, plan.FindPrice(toInterval, toCount)!);
    }

    [Test]
    public void A_higher_plan_is_an_upgrade_applied_now() => Assert.That(Classify("starter", "month", 1, "pro", "month"), Is.EqualTo(PlanChangeKind.Upgrade));

    [Test]
    public void A_lower_plan_is_a_downgrade_at_the_period_end() => Assert.That(Classify("pro", "month", 1, "starter", "year"), Is.EqualTo(PlanChangeKind.Downgrade));

    [Test]
    public void A_longer_interval_of_the_same_plan_is_an_upgrade() => Assert.That(Classify("starter", "month", 1, "starter", "year"), Is.EqualTo(PlanChangeKind.Upgrade));

    [Test]
    public void A_shorter_interval_of_the_same_plan_waits_for_the_period_end() => Assert.That(Classify("pro", "month", 3, "pro", "month"), Is.EqualTo(PlanChangeKind.Downgrade));

    [Test]
    public void Only_another_interval_or_interval_count_changes_the_interval()
    {
        var pro = Catalog.FindPlan("pro")!;
        var starter = Catalog.FindPlan("starter")!;
        Assert.That(PlanChangeRules.ChangesInterval("month", 3, pro.FindPrice("month", 1)!), Is.True);
        Assert.That(PlanChangeRules.ChangesInterval("month", 1, starter.FindPrice("year", 1)!), Is.True);
        Assert.That(PlanChangeRules.ChangesInterval("month", 1, starter.FindPrice("month", 1)!), Is.False);
    }

    [Test]
    public void The_same_plan_and_interval_is_no_change() => Assert.That(Classify("pro", "month", 1, "pro", "month"), Is.EqualTo(PlanChangeKind.None));
}

[TestFixture]
public class What_a_user_sees_of_a_subscription
{
    private static readonly BillingCatalog Catalog = CatalogLoader.Load(Path.Combine(TestEnvironment.Repo, "deploy", "catalogs", "default.json"));
    private static readonly DateTimeOffset Start = new(2026, 1, 31, 10, 0, 0, TimeSpan.Zero);

    private static SubscriptionRecord Sub(string status, DateTimeOffset? endedAt = null) => new()
    {
        SubscriptionId = "sub_1", UserId = "u1", CustomerId = "cus_1", PlanId = "pro", PriceId = "price_1", Interval = "month", IntervalCount = 1,
        StripeStatus = status, CurrentPeriodStart = Start, CurrentPeriodEnd = Start.AddMonths(1), CancelAtPeriodEnd = false, StartedAt = Start,
        EndedAt = endedAt, GraceUntil = Start.AddDays(1), Sequence = 1,
    };

    [Test]
    public void Without_a_subscription_the_user_is_on_the_free_plan_with_status_none()
    {
        var view = SubscriptionStatus.View(null, Catalog, unlimited: false);
        Assert.That((view.PlanId, view.Status, view.Interval), Is.EqualTo(("free", "none", (string?)null)));
    }

    [TestCase("trialing", "trialing", "pro")]
    [TestCase("active", "active", "pro")]
    [TestCase("past_due", "past_due", "pro")]
    [TestCase("unpaid", "past_due", "pro")]
    [TestCase("paused", "past_due", "pro")]
    [TestCase("incomplete", "none", "free")]
    [TestCase("incomplete_expired", "none", "free")]
    public void Stripe_statuses_read_as_billing_statuses(string stripe, string status, string plan)
    {
        var view = SubscriptionStatus.View(Sub(stripe), Catalog, unlimited: false);
        Assert.That((view.Status, view.PlanId), Is.EqualTo((status, plan)));
    }

    [Test]
    public void Ended_at_the_period_end_is_expired_and_earlier_is_canceled_both_on_the_free_plan()
    {
        var expired = SubscriptionStatus.View(Sub("canceled", Start.AddMonths(1)), Catalog, false);
        var canceled = SubscriptionStatus.View(Sub("canceled", Start.AddDays(3)), Catalog, false);
        Assert.That((expired.Status, expired.PlanId), Is.EqualTo(("expired", "free")));
        Assert.That((canceled.Status, canceled.PlanId), Is.EqualTo(("canceled", "free")));
    }

    [Test]
    public void Grace_is_shown_only_while_past_due()
    {
        Assert.That(SubscriptionStatus.View(Sub("past_due"), Catalog, false).GraceUntil, Is.EqualTo(Start.AddDays(1)));
        Assert.That(SubscriptionStatus.View(Sub("active"), Catalog, false).GraceUntil, Is.Null);
    }

    [Test]
    public void Return_urls_must_be_on_one_of_the_frontends_origins_or_this_machine()
    {
        var allowed = Billing.ServiceDefaults.ReturnOrigins.From(new Microsoft.Extensions.Configuration.ConfigurationBuilder().AddInMemoryCollection(
            new Dictionary<string, string?>
            {
                ["BILLING_PUBLIC_URL"] = "https://billing.example.com/base", ["BILLING_CORS_ORIGINS"] = "https://app.example.com, https://www.example.com",
                ["BILLING_RETURN_ORIGINS"] = "https://docs.example.com:8443",
            }).Build());
        Assert.That(new[]
        {
            "https://billing.example.com/billing/account", "https://APP.example.com/done?x=1", "https://www.example.com/", "https://docs.example.com:8443/a",
            "http://127.0.0.1:3000/ok", "http://localhost:5173/ok", "http://[::1]/ok",
        }.Where(u => !allowed.Allows(new Uri(u))), Is.Empty);
        Assert.That(new[]
        {
            "https://evil.example/login", "http://app.example.com/done", "https://app.example.com:444/done", "https://docs.example.com/a",
            "https://billing.example.com.evil.example/", "https://app.example.com@evil.example/",
        }.Where(u => allowed.Allows(new Uri(u))), Is.Empty);

        var (choice, errors) = CheckoutRules.Validate(new CheckoutRequest("pro", "year", null, "https://app.example.com/ok", "https://evil.example/login"),
            Catalog, "http://s", "http://c", allowedReturn: allowed.Allows);
        Assert.That(choice, Is.Null);
        Assert.That(errors.Keys, Is.EquivalentTo(new[] { "cancelUrl" }));
    }

    [Test]
    public void Checkout_validation_names_each_bad_field()
    {
        var (choice, errors) = CheckoutRules.Validate(new CheckoutRequest("pro", "week", null, "ftp://x", "not a url"), Catalog, "http://s", "http://c");
        Assert.That(choice, Is.Null);
        Assert.That(errors.Keys, Is.EquivalentTo(new[] { "interval", "successUrl", "cancelUrl" }));
        var (ok, none) = CheckoutRules.Validate(new CheckoutRequest("pro", "year", null, null, null), Catalog, "http://s", "http://c");
        Assert.That(none, Is.Empty);
        Assert.That((ok!.Price.Amount, ok.SuccessUrl), Is.EqualTo((5000L, "http://s")));
    }
}

/// <summary>An archived plan is no longer sold, and stays the plan of those who have it.</summary>
[TestFixture]
public class An_archived_plan
{
    private static readonly BillingCatalog Catalog = CatalogLoader.Parse("""
        {"freePlan":"free","plans":[{"id":"free","name":"Free"},
          {"id":"legacy","name":"Legacy","archived":true,"prices":[{"interval":"month","amount":900}],
           "meters":[{"meter":"ai.generation","limit":100,"window":"month"}]},
          {"id":"pro","name":"Pro","prices":[{"interval":"month","amount":500}]}]}
        """);

    [Test]
    public void Is_refused_for_a_checkout_or_a_change_to_it()
    {
        var (choice, errors) = CheckoutRules.Validate(new CheckoutRequest("legacy", "month", null, null, null), Catalog, "http://s", "http://c");
        Assert.That(choice, Is.Null);
        Assert.That(errors["planId"], Has.Some.Contain("no longer offered"));
        (choice, _) = CheckoutRules.Validate(new CheckoutRequest("legacy", "month", null, null, null), Catalog, "http://s", "http://c", currentPlanId: "pro");
        Assert.That(choice, Is.Null);
    }

    [Test]
    public void Is_accepted_back_by_those_who_have_it_and_keeps_its_allowance()
    {
        var (choice, errors) = CheckoutRules.Validate(new CheckoutRequest("legacy", "month", null, null, null), Catalog, "http://s", "http://c", currentPlanId: "legacy");
        Assert.That(choice?.Plan.Id, Is.EqualTo("legacy"), string.Join("; ", errors.SelectMany(e => e.Value)));
        Assert.That(Catalog.FindPlan("legacy")!.FindMeter("ai.generation")!.Limit, Is.EqualTo(100));
    }

    [Test]
    public void Cannot_be_the_free_plan()
    {
        var error = Assert.Throws<CatalogException>(() => CatalogLoader.Parse("""{"freePlan":"free","plans":[{"id":"free","name":"Free","archived":true}]}"""))!;
        Assert.That(error.Errors, Does.Contain("$.freePlan: the free plan cannot be archived"));
    }
}
