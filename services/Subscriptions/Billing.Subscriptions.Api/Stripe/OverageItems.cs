using Billing.Catalog;
using Billing.ServiceDefaults.Stripe;
using Stripe;

namespace Billing.Subscriptions.Api.Stripe;

/// <summary>One change of a subscription's items: change <c>Id</c>'s price, add <c>Price</c> (no id) or delete <c>Id</c>.</summary>
public sealed record ItemChange(string? Id, string? Price, bool Delete = false);

/// <summary>
/// The metered items that bill a plan's <c>bill</c> overage: a subscription to a plan with such meters carries, beside the
/// plan's price, that price's metered overage price of each such meter (<see cref="BillingCatalog.OveragePrices"/>); Stripe
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

    /// <summary>
    /// The catalog plan and price a Stripe subscription bills: by its plan item's lookup key, else (a price a later push
    /// replaced has lost its key) by its <c>planId</c> metadata and the item's interval; null when neither is in the catalog.
    /// </summary>
    public static (Billing.Catalog.Plan Plan, Billing.Catalog.Price Price)? PlanOf(Subscription subscription, BillingCatalog catalog)
    {
        var item = subscription.PlanItemOrNull();
        if (item is null)
        {
            return null;
        }
        if (catalog.FindByLookupKey(item.Price.LookupKey) is { } found)
        {
            return found;
        }
        var plan = catalog.FindPlan(subscription.Metadata?.GetValueOrDefault("planId"));
        var price = plan?.FindPrice(item.Price.Recurring?.Interval ?? "", (int)(item.Price.Recurring?.IntervalCount ?? 1));
        return plan is null || price is null ? null : (plan, price);
    }

    /// <summary>Stripe's Billing Meters (active or not), meter id → event name.</summary>
    public static async Task<Dictionary<string, string>> MeterEventNamesAsync(IStripeClient stripe, StripeCalls calls, CancellationToken ct) =>
        (await StripeMeters.ListAsync(stripe, calls, ct)).ToDictionary(m => m.Id, m => m.EventName, StringComparer.Ordinal);

    /// <summary>The meter event names whose overage the subscription's metered items bill (one per item, so a meter billed twice shows twice).</summary>
    public static List<string> HeldEventNames(Subscription subscription, IReadOnlyDictionary<string, string> meterEventNames) =>
        subscription.MeteredItems().Select(i => i.Price.Recurring?.Meter is { } meter ? meterEventNames.GetValueOrDefault(meter, meter) : "(no meter)")
            .Order(StringComparer.Ordinal).ToList();

    /// <summary>True when the subscription's metered items are exactly <paramref name="wanted"/>.</summary>
    public static bool Match(Subscription subscription, IReadOnlyList<string> wanted) =>
        subscription.MeteredItems().Select(i => i.Price.Id).Order(StringComparer.Ordinal).SequenceEqual(wanted.Order(StringComparer.Ordinal));

    /// <summary><paramref name="changes"/> as a subscription update's items.</summary>
    public static List<SubscriptionItemOptions> ToUpdate(IEnumerable<ItemChange> changes) =>
        changes.Select(c => new SubscriptionItemOptions { Id = c.Id, Price = c.Price, Deleted = c.Delete ? true : null }).ToList();

    /// <summary><paramref name="changes"/> as an invoice preview's subscription items.</summary>
    public static List<InvoiceSubscriptionDetailsItemOptions> ToPreview(IEnumerable<ItemChange> changes) =>
        changes.Select(c => new InvoiceSubscriptionDetailsItemOptions { Id = c.Id, Price = c.Price, Deleted = c.Delete ? true : null }).ToList();

    /// <summary>
    /// The item changes that move <paramref name="subscription"/> to <paramref name="priceId"/> with the metered items
    /// <paramref name="wanted"/>: the plan item changes its price, metered items no longer wanted are deleted (Stripe bills
    /// their usage so far unless the change's proration is <c>none</c> — in flexible billing mode, the default of
    /// subscriptions Billing creates), missing ones are added; ones kept are left alone.
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
