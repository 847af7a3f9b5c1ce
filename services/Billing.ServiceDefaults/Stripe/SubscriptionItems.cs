using Stripe;

namespace Billing.ServiceDefaults.Stripe;

/// <summary>
/// A Billing subscription holds one licensed item (the plan's price) and one metered item per meter whose overage it bills
/// (the catalog's <c>bill</c> meters). Whatever reads "the plan's price" or "the period" reads the licensed item.
/// </summary>
public static class SubscriptionItems
{
    /// <summary>True for a metered (usage-based) price.</summary>
    public static bool IsMetered(Price? price) => price?.Recurring?.UsageType == "metered";

    /// <summary>The item that bills the plan: the licensed one.</summary>
    public static SubscriptionItem PlanItem(this Subscription subscription) =>
        subscription.PlanItemOrNull() ?? throw new InvalidOperationException($"Subscription {subscription.Id} has no licensed item.");

    /// <summary>The licensed item, or null for a subscription made outside Billing with metered items only.</summary>
    public static SubscriptionItem? PlanItemOrNull(this Subscription subscription) =>
        subscription.Items?.Data?.FirstOrDefault(i => !IsMetered(i.Price));

    /// <summary>The metered items that bill overage.</summary>
    public static IReadOnlyList<SubscriptionItem> MeteredItems(this Subscription subscription) =>
        subscription.Items?.Data?.Where(i => IsMetered(i.Price)).ToList() ?? [];
}
