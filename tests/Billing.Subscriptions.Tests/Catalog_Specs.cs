namespace Billing.Subscriptions.Tests;

[TestFixture]
public class The_catalog
{
    public static IEnumerable<string> SeedCatalogs() =>
        Directory.GetFiles(Path.Combine(TestEnvironment.Repo, "deploy", "catalogs"), "*.json").Select(Path.GetFileName).OrderBy(n => n)!;

    [TestCaseSource(nameof(SeedCatalogs))]
    public void Every_shipped_catalog_is_valid(string file)
    {
        var catalog = CatalogLoader.Load(Path.Combine(TestEnvironment.Repo, "deploy", "catalogs", file));
        Assert.That(catalog.Free.IsFree, Is.True);
        Assert.That(catalog.Plans.Count(p => !p.IsFree), Is.GreaterThan(0));
    }

    [Test]
    public void There_is_a_catalog_for_each_of_the_five_seeds()
    {
        Assert.That(SeedCatalogs().Count(), Is.GreaterThanOrEqualTo(5));
    }

    [Test]
    public void The_default_catalog_is_the_first_seeds_Pro_plan()
    {
        var catalog = CatalogLoader.Load(Path.Combine(TestEnvironment.Repo, "deploy", "catalogs", "default.json"));
        var pro = catalog.FindPlan("pro")!;
        Assert.That(pro.FindPrice("month", 1)!.Amount, Is.EqualTo(500));
        Assert.That(pro.FindPrice("year", 1)!.Amount, Is.EqualTo(5000));
        Assert.That(pro.FindMeter("ai.generation"), Is.EqualTo(new MeterAllowance { Meter = "ai.generation", Limit = 250, Window = "month", Overage = "block" }));
        Assert.That(catalog.GracePeriodDays, Is.EqualTo(1));
        Assert.That(catalog.RefundWindowDays, Is.EqualTo(7));
        Assert.That(catalog.Free.FindMeter("ai.generation")!.Limit, Is.Zero);
    }

    [Test]
    public void Lookup_keys_default_to_plan_and_interval_and_find_their_plan()
    {
        var catalog = CatalogLoader.Parse("""
            {"freePlan":"free","plans":[{"id":"free","name":"Free"},
              {"id":"tier","name":"Tier","prices":[{"interval":"month","intervalCount":3,"amount":5400},{"interval":"year","amount":19000}]}],
             "tokenPacks":[{"id":"starter","name":"Starter","tokens":100000,"amount":500}]}
            """);
        Assert.That(catalog.FindPlan("tier")!.Prices.Select(p => p.LookupKey), Is.EqualTo(new[] { "tier_month3", "tier_year" }));
        Assert.That(catalog.FindByLookupKey("tier_month3")!.Value.Plan.Id, Is.EqualTo("tier"));
        Assert.That(catalog.FindPack("starter")!.LookupKey, Is.EqualTo("pack_starter"));
        Assert.That(catalog.FindPlan("tier")!.Prices[0].Currency, Is.EqualTo("usd"));
    }

    [Test]
    public void A_broken_catalog_lists_every_error_with_its_json_path()
    {
        var error = Assert.Throws<CatalogException>(() => CatalogLoader.Parse("""
            {"freePlan":"gold","plans":[
              {"id":"Bad Id","name":"","trialDays":-1,"prices":[{"interval":"fortnight","amount":0}],
               "meters":[{"meter":"x","limit":-5,"window":"hour","overage":"bill"},
                         {"meter":"y","limit":1,"window":"day","overage":"tokens","tokensPerUnit":2000000000}]},
              {"id":"p","name":"P","prices":[{"interval":"month","amount":100,"lookupKey":"k"},{"interval":"year","amount":900,"lookupKey":"k"},
                                             {"interval":"year","intervalCount":5,"amount":4000}]}],
             "tokenPacks":[{"id":"t","name":"T","tokens":0,"amount":100}]}
            """))!;
        Assert.That(error.Errors, Is.SupersetOf(new[]
        {
            "$.freePlan: must name a plan without prices (got \"gold\")",
            "$.plans[0].id: lowercase letters, digits, '-' or '_'",
            "$.plans[0].name: required",
            "$.plans[0].trialDays: 0 to 730",
            "$.plans[0].prices[0].interval: one of day, week, month, year",
            "$.plans[0].prices[0].amount: a positive amount in the currency's minor unit",
            "$.plans[0].meters[0].limit: null (unlimited) or 0 or more",
            "$.plans[0].meters[0].window: one of day, month, period",
            "$.plans[0].meters[0].stripeMeterEventName: required when overage is bill",
            "$.plans[0].meters[1].tokensPerUnit: from 1 to 1000000000",
            "$.plans[1].prices[1].lookupKey: \"k\" is used twice",
            "$.plans[1].prices[2].intervalCount: at most 3 with interval year (Stripe bills at most every three years)",
            "$.tokenPacks[0].tokens: a positive number of tokens",
        }));
    }

    [Test]
    public void Billed_overage_gets_a_metered_price_per_plan_price_on_one_stripe_meter_per_meter()
    {
        var catalog = CatalogLoader.Load(Path.Combine(TestEnvironment.Repo, "deploy", "catalogs", "chatbot.json"));
        var pro = catalog.FindPlan("pro")!;
        var business = catalog.FindPlan("business")!;
        Assert.That(BillingCatalog.OveragePrices(pro, pro.Prices[0]), Is.EqualTo(new[]
        {
            new OveragePrice("pro_month_overage_chat_messages_overage", "chat_messages_overage", "chat.message", 0.5m, "usd", "month", 1),
        }));
        Assert.That(BillingCatalog.OveragePrices(business, business.Prices[0]).Single().LookupKey, Is.EqualTo("business_month_overage_chat_messages_overage"));
        Assert.That(BillingCatalog.OveragePrices(catalog.Free, new Price { Interval = "month", Amount = 1 }), Is.Empty);
        Assert.That(catalog.AllOveragePrices().Select(o => o.EventName).Distinct(), Is.EqualTo(new[] { "chat_messages_overage" }), "one Stripe meter");
        Assert.That(catalog.AllOveragePrices()[0].ProductId, Is.EqualTo("billing_overage_chat_messages_overage"));
    }

    [Test]
    public void Billed_overage_needs_a_price_a_paid_plan_and_one_event_name_per_meter()
    {
        var error = Assert.Throws<CatalogException>(() => CatalogLoader.Parse("""
            {"freePlan":"free","plans":[
              {"id":"free","name":"Free","meters":[{"meter":"m","limit":1,"window":"day","overage":"bill","stripeMeterEventName":"m_over","overageUnitAmount":1}]},
              {"id":"a","name":"A","prices":[{"interval":"month","amount":100}],
               "meters":[{"meter":"m","limit":1,"overage":"bill","stripeMeterEventName":"m_over"},
                         {"meter":"n","limit":1,"overage":"block","overageUnitAmount":2}]},
              {"id":"b","name":"B","prices":[{"interval":"month","amount":200}],
               "meters":[{"meter":"m","limit":1,"overage":"bill","stripeMeterEventName":"m_other","overageUnitAmount":0.25},
                         {"meter":"k","limit":1,"overage":"bill","stripeMeterEventName":"m_over","overageUnitAmount":0.25}]},
              {"id":"c","name":"C","prices":[{"interval":"month","amount":300}],
               "meters":[{"meter":"x","limit":1,"overage":"bill","stripeMeterEventName":"x over!","overageUnitAmount":0.5}]}]}
            """))!;
        Assert.That(error.Errors, Is.SupersetOf(new[]
        {
            "$.plans[0].meters[0].overage: a free plan has no subscription to bill overage on: use block or tokens",
            "$.plans[1].meters[0].overageUnitAmount: required when overage is bill: the price of one unit in the minor unit, above 0, at most 12 decimals (0.5 = half a cent)",
            "$.plans[1].meters[1].overageUnitAmount: only with overage bill",
            "$.plans[3].meters[0].stripeMeterEventName: letters, digits, '_', '-' or '.', at most 100",
            "$.plans: meter \"m\" is billed under several stripeMeterEventNames (free: m_over, a: m_over, b: m_other): use one per meter; each plan's overageUnitAmount may differ",
            "$.plans: stripeMeterEventName \"m_over\" is used by several meters (m, k): one event name per meter",
        }));
    }

    [Test]
    public void Plans_may_bill_one_meters_overage_at_different_prices()
    {
        var catalog = CatalogLoader.Parse("""
            {"freePlan":"free","plans":[{"id":"free","name":"Free"},
              {"id":"a","name":"A","prices":[{"interval":"month","amount":100}],
               "meters":[{"meter":"m","limit":1,"overage":"bill","stripeMeterEventName":"m_over","overageUnitAmount":1}]},
              {"id":"b","name":"B","prices":[{"interval":"month","amount":200}],
               "meters":[{"meter":"m","limit":5,"overage":"bill","stripeMeterEventName":"m_over","overageUnitAmount":0.5}]}]}
            """);
        Assert.That(catalog.AllOveragePrices().Select(o => (o.LookupKey, o.UnitAmount)),
            Is.EqualTo(new[] { ("a_month_overage_m_over", 1m), ("b_month_overage_m_over", 0.5m) }));
    }

    [Test]
    public void Unknown_members_and_bad_json_are_named()
    {
        var unknown = Assert.Throws<CatalogException>(() => CatalogLoader.Parse("""{"freePlan":"free","plans":[{"id":"free","name":"F","colour":"red"}]}"""))!;
        Assert.That(unknown.Errors.Single(), Does.StartWith("$.plans[0]"));
        var broken = Assert.Throws<CatalogException>(() => CatalogLoader.Parse("""{"freePlan": """))!;
        Assert.That(broken.Errors, Has.Count.EqualTo(1));
        var missing = Assert.Throws<CatalogException>(() => CatalogLoader.Load("/nonexistent/catalog.json"))!;
        Assert.That(missing.Errors.Single(), Does.Contain("file not found"));
    }

    [Test]
    public void Unlimited_groups_grant_unlimited_access()
    {
        var catalog = CatalogLoader.Load(Path.Combine(TestEnvironment.Repo, "deploy", "catalogs", "default.json"));
        Assert.That(catalog.IsUnlimited(["staff", "ai-unlimited"]), Is.True);
        Assert.That(catalog.IsUnlimited(["staff"]), Is.False);
    }
}
