using Stripe;

namespace Billing.ServiceDefaults.Stripe;

/// <summary>
/// How Billing reads a Stripe subscription schedule (Subscriptions writes one for a downgrade to another billing interval
/// or to other metered overage items; Payments publishes what it will change). A phase lists the plan's price first, its
/// metered prices after it (as Billing writes phases and as Stripe copies a subscription's items, plan item first). One rule for both, so that what a user is told comes next is what happens.
/// </summary>
public static class SubscriptionSchedules
{
    /// <summary>True while the schedule still manages its subscription (not released, canceled or completed).</summary>
    public static bool InForce(SubscriptionSchedule schedule) => schedule.Status is "active" or "not_started";

    /// <summary>
    /// The phase that starts when <paramref name="item"/>'s current period ends and bills another price: the change that
    /// comes next; null when the schedule changes nothing then (its last change has already happened).
    /// </summary>
    public static SubscriptionSchedulePhase? NextChange(SubscriptionSchedule schedule, SubscriptionItem item)
    {
        var next = schedule.Phases?.Where(p => p.StartDate >= item.CurrentPeriodEnd).OrderBy(p => p.StartDate).FirstOrDefault();
        return next?.Items?.FirstOrDefault()?.PriceId is { } priceId && priceId != item.Price?.Id ? next : null;
    }
}
