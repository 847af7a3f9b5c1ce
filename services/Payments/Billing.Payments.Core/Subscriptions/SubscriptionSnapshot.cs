namespace Billing.Payments.Core.Subscriptions;

/// <summary>A subscription as read from Stripe just now, in Billing's terms.</summary>
public sealed record SubscriptionSnapshot
{
    public required string SubscriptionId { get; init; }
    public required string UserId { get; init; }
    public required string CustomerId { get; init; }
    public required string PlanId { get; init; }
    public required string PriceId { get; init; }
    public required string Interval { get; init; }
    public required int IntervalCount { get; init; }
    public required string Status { get; init; }
    public required DateTimeOffset CurrentPeriodStart { get; init; }
    public required DateTimeOffset CurrentPeriodEnd { get; init; }
    public required bool CancelAtPeriodEnd { get; init; }
    public DateTimeOffset? TrialEnd { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public DateTimeOffset? EndedAt { get; init; }
    public string? EndedReason { get; init; }
    /// <summary>The change Stripe makes when the current period ends (a downgrade), if one is scheduled.</summary>
    public Billing.Contracts.Values.ScheduledPlanChange? ScheduledChange { get; init; }

    /// <summary>Stripe statuses after which the subscription is over.</summary>
    public bool IsOver => Status is "canceled" or "incomplete_expired";

    /// <summary>Stripe statuses that give access (past_due within grace too; Subscriptions decides the grace).</summary>
    public bool IsStarted => Status is "trialing" or "active" or "past_due" or "unpaid" or "paused";

    /// <summary>Whether anything a consumer cares about differs.</summary>
    public bool SameAs(SubscriptionSnapshot? other) => other is not null && this with { } == other;
}

/// <summary>What Payments last published about a subscription.</summary>
public sealed record SubscriptionMirror(SubscriptionSnapshot Snapshot, bool Activated, bool Ended, long Sequence);

/// <summary>What to publish after re-reading a subscription from Stripe.</summary>
public enum SubscriptionMessage
{
    Activated,
    Updated,
    Ended,
}

/// <summary>
/// Decides the integration messages for the move from what was last published to Stripe's current object. Because the
/// input is Stripe's current state (never a webhook's stale snapshot), any order or repetition of webhooks leads to the
/// same messages about the same final state, and an unchanged state publishes nothing.
/// </summary>
public static class SubscriptionChanges
{
    public static IReadOnlyList<SubscriptionMessage> Decide(SubscriptionMirror? previous, SubscriptionSnapshot current)
    {
        if (previous is { Ended: true })
        {
            return []; // a subscription that ended never comes back in Stripe
        }
        if (current.IsOver)
        {
            return [SubscriptionMessage.Ended];
        }
        if (previous is not { Activated: true })
        {
            return current.IsStarted ? [SubscriptionMessage.Activated] : [];
        }
        return current.SameAs(previous.Snapshot) ? [] : [SubscriptionMessage.Updated];
    }
}
