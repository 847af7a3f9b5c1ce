using Billing.Catalog;
using Billing.ServiceDefaults.Stripe;
using Stripe;

namespace Billing.Subscriptions.Api.Stripe;

/// <summary>One change of a subscription's items: change <c>Id</c>'s price, add <c>Price</c> (no id) or delete <c>Id</c>.</summary>
public sealed record ItemChange(string? Id, string? Price, bool Delete = false);

/// <summary>
/// The metered items that bill a plan's <c>bill</c> overage: a subscription to a plan with such meters carries, beside the
/// plan's price, the catalog's metered price of each meter event name (<see cref="BillingCatalog.OveragePrices"/>); Stripe
/// adds up the meter events Usage reports and invoices them at the renewal.
/// </summary>
public static class OverageItems
{
    /// <summary>The Stripe price ids of the overage prices of <paramref name="plan"/> at <paramref name="price"/>, or the lookup key Stripe lacks.</summary>
    public static async Task<(IReadOnlyList<string> PriceIds, string? Missing)> FindAsync(Billing.Catalog.Plan plan, Billing.Catalog.Price price, StripePrices prices, CancellationToken ct)
    {
        var ids = new List<string>();
        foreach (var overage in BillingCatalog.OveragePrices(plan, price))
        {
            if (await prices.FindAsync(overage.LookupKey, ct) is not { } id)
            {
                return ([], overage.LookupKey);
            }
            ids.Add(id);
        }
        return (ids, null);
    }

    /// <summary>True when the subscription's metered items are exactly <paramref name="wanted"/>.</summary>
    public static bool Match(Subscription subscription, IReadOnlyList<string> wanted) =>
        subscription.MeteredItems().Select(i => i.Price.Id).Order(StringComparer.Ordinal).SequenceEqual(wanted.Order(StringComparer.Ordinal));

    /// <summary>
    /// The item changes that move <paramref name="subscription"/> to <paramref name="priceId"/> with the metered items
    /// <paramref name="wanted"/>: the plan item changes its price, metered items no longer wanted are deleted (Stripe bills
    /// their usage so far unless the change's proration is <c>none</c>), missing ones are added; ones kept are left alone.
    /// </summary>
    public static List<ItemChange> Changes(Subscription subscription, string priceId, IReadOnlyList<string> wanted)
    {
        var metered = subscription.MeteredItems();
        var changes = new List<ItemChange> { new(subscription.PlanItem().Id, priceId) };
        changes.AddRange(metered.Where(i => !wanted.Contains(i.Price.Id)).Select(i => new ItemChange(i.Id, null, Delete: true)));
        changes.AddRange(wanted.Where(id => metered.All(i => i.Price.Id != id)).Select(id => new ItemChange(null, id)));
        return changes;
    }
}
