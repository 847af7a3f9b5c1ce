using Billing.Catalog;

namespace Billing.Subscriptions.Core.Subscriptions;

/// <summary>How a plan change is applied.</summary>
public enum PlanChangeKind
{
    /// <summary>The same plan and price: nothing to do.</summary>
    None,
    /// <summary>Applies now; the unused part of the period is credited and the difference charged at once.</summary>
    Upgrade,
    /// <summary>Applies at the period end; the user keeps what they paid for until then.</summary>
    Downgrade,
    /// <summary>
    /// Back to the price of the plan the user is still entitled to, undoing a downgrade scheduled for the period end:
    /// applies now, nothing is charged or credited.
    /// </summary>
    Restore,
}

/// <summary>Upgrade now, downgrade at the period end (the fifth seed's rule, and what users expect).</summary>
public static class PlanChangeRules
{
    /// <summary>
    /// A higher plan (later in the catalog) is an upgrade and a lower one a downgrade. Within one plan, a longer billing
    /// interval is an upgrade (charged now, prorated) and a shorter one takes effect when the current period ends.
    /// </summary>
    public static PlanChangeKind Classify(BillingCatalog catalog, string currentPlanId, string currentInterval, int currentIntervalCount,
        Plan target, Price targetPrice)
    {
        var currentRank = catalog.Rank(currentPlanId);
        var targetRank = catalog.Rank(target.Id);
        if (targetRank != currentRank)
        {
            return targetRank > currentRank ? PlanChangeKind.Upgrade : PlanChangeKind.Downgrade;
        }
        var current = Days(currentInterval) * currentIntervalCount;
        var next = Days(targetPrice.Interval) * targetPrice.IntervalCount;
        return next == current ? PlanChangeKind.None : next > current ? PlanChangeKind.Upgrade : PlanChangeKind.Downgrade;
    }

    /// <summary>
    /// True when the target price bills on another interval than the current one. Stripe then starts a new period at once
    /// and charges the new price now (whatever <c>billing_cycle_anchor</c> says), so a downgrade that changes the interval
    /// waits for the period end in a Stripe subscription schedule instead of a price change with the cycle kept.
    /// </summary>
    public static bool ChangesInterval(string currentInterval, int currentIntervalCount, Price targetPrice) =>
        currentInterval != targetPrice.Interval || currentIntervalCount != targetPrice.IntervalCount;

    private static int Days(string interval) => interval switch
    {
        "day" => 1,
        "week" => 7,
        "month" => 30,
        "year" => 365,
        _ => 30,
    };
}
