using Billing.Catalog;

namespace Billing.Wallet.Tests;

public sealed class The_learning_community_catalog
{
    [Test]
    public void Sells_three_never_expiring_packs_that_stack_on_tier_limits()
    {
        var catalog = CatalogLoader.Load(Path.Combine(TestEnvironment.Repo, "deploy", "catalogs", "learning-community.json"));

        Assert.That(catalog.TokenPacks.Select(p => (p.Id, p.Tokens, p.Amount, p.ExpiresAfterDays)), Is.EqualTo(new (string, long, long, int?)[]
        {
            ("starter", 100_000, 500, null), ("booster", 500_000, 2000, null), ("power", 1_000_000, 3500, null),
        }));
        Assert.That(catalog.TokenPacks.Select(p => p.LookupKey), Is.EqualTo(new[] { "pack_starter", "pack_booster", "pack_power" }));
        Assert.That(catalog.Plans.SelectMany(p => p.Meters).Any(m => m.Overage == "tokens"), Is.True, "packs top up a tier's allowance");
    }
}
