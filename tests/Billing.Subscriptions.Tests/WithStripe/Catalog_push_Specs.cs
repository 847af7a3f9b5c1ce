using Stripe;

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
}
