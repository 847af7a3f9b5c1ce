namespace Billing.Contracts.Values;

/// <summary>
/// A plan change that waits for the end of the current period (a downgrade). Part of <see cref="SubscriptionActivated"/>
/// and <see cref="SubscriptionUpdated"/>, not a message of its own (events live in <c>Billing.Contracts</c>, their parts here).
/// </summary>
public sealed record ScheduledPlanChange
{
    /// <summary>Catalog plan id from then on.</summary>
    public required string PlanId { get; init; }
    /// <summary>Stripe price id from then on.</summary>
    public required string PriceId { get; init; }
    /// <summary><c>day</c>, <c>week</c>, <c>month</c> or <c>year</c>.</summary>
    public required string Interval { get; init; }
    /// <summary>Intervals per period.</summary>
    public required int IntervalCount { get; init; }
    /// <summary>When it takes effect: the end of the current period.</summary>
    public required DateTimeOffset EffectiveAt { get; init; }
}
