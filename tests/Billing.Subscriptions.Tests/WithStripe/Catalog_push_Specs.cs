using Billing.Subscriptions.Api.Stripe;
using Microsoft.Extensions.Configuration;
using Stripe;
using Stripe.Billing;

namespace Billing.Subscriptions.Tests.WithStripe;

[TestFixture]
public class Pushing_a_catalog
{
    private static string CatalogWith(string planId, long amount)
    {
        var path = Path.Combine(Path.GetTempPath(), $"catalog-{planId}-{amount}-{Guid.NewGuid():N}.json");
        System.IO.File.WriteAllText(path, $$"""
            {"freePlan":"free","plans":[{"id":"free","name":"Free"},
              {"id":"{{planId}}","name":"Revert","prices":[{"interval":"month","amount":{{amount}}}]}]}
            """);
        return path;
    }

    [Test]
    public async Task An_amount_changed_and_changed_back_the_same_day_is_pushed_each_time()
    {
        var planId = "revert" + Guid.NewGuid().ToString("N")[..8];
        foreach (var amount in new long[] { 700, 900, 700 })
        {
            Assert.That(await Hosts.PushCatalogAsync(CatalogWith(planId, amount)), Is.Zero, $"push with {amount}");
            var prices = await new PriceService(Hosts.Subscriptions.Stripe).ListAsync(new PriceListOptions { LookupKeys = [$"{planId}_month"], Active = true });
            Assert.That(prices.Data.Single().UnitAmount, Is.EqualTo(amount));
        }
    }

    [Test]
    public async Task A_rerun_archives_the_price_an_interrupted_push_left_active()
    {
        var planId = "leftover" + Guid.NewGuid().ToString("N")[..8];
        Assert.That(await Hosts.PushCatalogAsync(CatalogWith(planId, 700)), Is.Zero);
        var prices = new PriceService(Hosts.Subscriptions.Stripe);
        // What a push dying between "create the new price (it takes the lookup key over)" and "archive the old one" leaves.
        var leftover = await prices.CreateAsync(new PriceCreateOptions
        {
            Product = $"billing_plan_{planId}", UnitAmount = 500, Currency = "usd", Recurring = new PriceRecurringOptions { Interval = "month" },
        });

        Assert.That(await Hosts.PushCatalogAsync(CatalogWith(planId, 700)), Is.Zero);

        Assert.That((await prices.GetAsync(leftover.Id)).Active, Is.False);
        var current = await prices.ListAsync(new PriceListOptions { LookupKeys = [$"{planId}_month"], Active = true });
        Assert.That(current.Data.Single().UnitAmount, Is.EqualTo(700), "the lookup key's price stays");
    }

    private static string OverageCatalog(string planId, string eventName, decimal unitAmount)
    {
        var path = Path.Combine(Path.GetTempPath(), $"catalog-{planId}-{Guid.NewGuid():N}.json");
        System.IO.File.WriteAllText(path, $$"""
            {"freePlan":"free","plans":[{"id":"free","name":"Free"},
              {"id":"{{planId}}","name":"Metered","prices":[{"interval":"month","amount":1500},{"interval":"year","amount":15000}],
               "meters":[{"meter":"chat.message","limit":10,"window":"day","overage":"bill","stripeMeterEventName":"{{eventName}}",
                          "overageUnitAmount":{{unitAmount.ToString(System.Globalization.CultureInfo.InvariantCulture)}}}]}]}
            """);
        return path;
    }

    [Test]
    public async Task Billed_overage_gets_a_meter_and_a_metered_price_per_interval_and_a_changed_unit_price_replaces_it()
    {
        var planId = "metered" + Guid.NewGuid().ToString("N")[..8];
        var eventName = planId + "_overage";
        Assert.That(await DiffAsync(OverageCatalog(planId, eventName, 0.5m)), Is.EqualTo(1), "no meter, no metered price yet");
        Assert.That(await Hosts.PushCatalogAsync(OverageCatalog(planId, eventName, 0.5m)), Is.Zero);
        Assert.That(await Hosts.PushCatalogAsync(OverageCatalog(planId, eventName, 0.5m)), Is.Zero, "a re-run changes nothing");
        Assert.That(await DiffAsync(OverageCatalog(planId, eventName, 0.5m)), Is.Zero);

        var meters = new List<Meter>();
        await foreach (var m in new MeterService(Hosts.Subscriptions.Stripe).ListAutoPagingAsync(new MeterListOptions()))
        {
            meters.Add(m);
        }
        var meter = meters.Single(m => m.EventName == eventName);
        Assert.That((meter.Status, meter.DefaultAggregation.Formula, meter.CustomerMapping.EventPayloadKey, meter.ValueSettings.EventPayloadKey),
            Is.EqualTo(("active", "sum", "stripe_customer_id", "value")), "what Usage's meter events carry");
        var prices = new PriceService(Hosts.Subscriptions.Stripe);
        foreach (var (key, interval) in new[] { ($"{planId}_month_overage_{eventName}", "month"), ($"{planId}_year_overage_{eventName}", "year") })
        {
            var price = (await prices.ListAsync(new PriceListOptions { LookupKeys = [key], Active = true })).Data.Single();
            Assert.That((price.UnitAmountDecimal, price.Recurring.UsageType, price.Recurring.Meter, price.Recurring.Interval),
                Is.EqualTo(((decimal?)0.5m, "metered", meter.Id, interval)));
        }

        var cheaper = OverageCatalog(planId, eventName, 0.25m);
        Assert.That(await DiffAsync(cheaper), Is.EqualTo(1), "the file says 0.25, Stripe 0.5");
        Assert.That(await Hosts.PushCatalogAsync(cheaper), Is.Zero);
        Assert.That(await DiffAsync(cheaper), Is.Zero);
        var replaced = (await prices.ListAsync(new PriceListOptions { LookupKeys = [$"{planId}_month_overage_{eventName}"], Active = true })).Data.Single();
        Assert.That((replaced.UnitAmountDecimal, replaced.Recurring.Meter), Is.EqualTo(((decimal?)0.25m, meter.Id)), "same meter, new price");
    }

    [Test]
    public async Task A_meter_that_keeps_one_event_per_hour_is_refused_not_used()
    {
        // A meter made elsewhere under the catalog's event name, pre-aggregated per hour: Stripe would keep the last event of
        // each hour, and Usage sends one event per spend — 50 spends in an hour billed as one.
        var planId = "hourly" + Guid.NewGuid().ToString("N")[..8];
        var eventName = planId + "_overage";
        await new MeterService(Hosts.Subscriptions.Stripe).CreateAsync(new MeterCreateOptions
        {
            DisplayName = "made in the Dashboard", EventName = eventName, EventTimeWindow = "hour",
            DefaultAggregation = new MeterDefaultAggregationOptions { Formula = "sum" },
            CustomerMapping = new MeterCustomerMappingOptions { Type = "by_id", EventPayloadKey = "stripe_customer_id" },
            ValueSettings = new MeterValueSettingsOptions { EventPayloadKey = "value" },
        });

        Assert.That(await Hosts.PushCatalogAsync(OverageCatalog(planId, eventName, 0.5m)), Is.Not.Zero);
    }

    [Test]
    public async Task A_lookup_key_another_product_s_price_holds_is_not_taken_over()
    {
        // Another product on the same Stripe account uses the key: taking it over would change what that product charges,
        // and archive its price.
        var planId = "shared" + Guid.NewGuid().ToString("N")[..8];
        var products = new ProductService(Hosts.Subscriptions.Stripe);
        var other = await products.CreateAsync(new ProductCreateOptions { Id = "other_" + planId, Name = "Another product" });
        var theirs = await new PriceService(Hosts.Subscriptions.Stripe).CreateAsync(new PriceCreateOptions
        {
            Product = other.Id, UnitAmount = 900, Currency = "usd", LookupKey = $"{planId}_month",
            Recurring = new PriceRecurringOptions { Interval = "month" },
        });

        Assert.That(await Hosts.PushCatalogAsync(CatalogWith(planId, 700)), Is.Not.Zero, "stops and says why");

        var after = await new PriceService(Hosts.Subscriptions.Stripe).GetAsync(theirs.Id);
        Assert.That((after.Active, after.LookupKey), Is.EqualTo((true, $"{planId}_month")), "their price is left as it was");
    }

    private static Task<int> DiffAsync(string path) =>
        CatalogCommands.RunAsync(["diff", path], new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["STRIPE_SECRET_KEY"] = "sk_test_x", ["STRIPE_API_BASE"] = Hosts.SimulatorUrl }).Build());

    [Test]
    public async Task Diff_lists_a_price_the_file_changed_until_it_is_pushed()
    {
        var planId = "diff" + Guid.NewGuid().ToString("N")[..8];
        Assert.That(await DiffAsync(CatalogWith(planId, 700)), Is.EqualTo(1), "not in Stripe yet");
        Assert.That(await Hosts.PushCatalogAsync(CatalogWith(planId, 700)), Is.Zero);
        Assert.That(await DiffAsync(CatalogWith(planId, 700)), Is.Zero, "Stripe bills what the file says");

        var changed = CatalogWith(planId, 900);
        Assert.That(await DiffAsync(changed), Is.EqualTo(1), "the file says 900, Stripe still 700");
        Assert.That(await Hosts.PushCatalogAsync(changed), Is.Zero);
        Assert.That(await DiffAsync(changed), Is.Zero);
    }
}
