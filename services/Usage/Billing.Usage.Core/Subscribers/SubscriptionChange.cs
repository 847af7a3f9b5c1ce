using Billing.Contracts;

namespace Billing.Usage.Core.Subscribers;

/// <summary>What SubscriptionActivated, SubscriptionUpdated and SubscriptionEnded have in common for Usage.</summary>
public sealed record SubscriptionChange
{
    public required string UserId { get; init; }
    public required string SubscriptionId { get; init; }
    public required string PlanId { get; init; }
    public required string Status { get; init; }
    /// <summary>The status just before this change (SubscriptionUpdated's <c>PreviousStatus</c>), when the event says.</summary>
    public string? PreviousStatus { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? PeriodStart { get; init; }
    public DateTimeOffset? PeriodEnd { get; init; }
    public required long Sequence { get; init; }
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The subscription's Stripe customer, when the event names it (billed overage is reported for it).</summary>
    public string? CustomerId { get; init; }
    /// <summary>True for SubscriptionEnded: the subscription is over whatever its status says.</summary>
    public bool Ended { get; init; }

    /// <summary>Stripe statuses under which the plan's access holds (past_due keeps it until suspended).</summary>
    public static bool GrantsAccess(string? status) => status is "trialing" or "active" or "past_due";

    /// <summary>True when the subscription no longer grants the plan (ended, canceled, unpaid, paused, incomplete…).</summary>
    public bool RevokesAccess => Ended || !GrantsAccess(Status);

    public static SubscriptionChange From(SubscriptionActivated e) => new()
    {
        UserId = e.UserId,
        SubscriptionId = e.SubscriptionId,
        PlanId = e.PlanId,
        CustomerId = e.CustomerId,
        Status = e.Status,
        StartedAt = e.StartedAt,
        PeriodStart = e.CurrentPeriodStart,
        PeriodEnd = e.CurrentPeriodEnd,
        Sequence = e.Sequence,
        OccurredAt = e.OccurredAt,
    };

    public static SubscriptionChange From(SubscriptionUpdated e) => new()
    {
        UserId = e.UserId,
        SubscriptionId = e.SubscriptionId,
        PlanId = e.PlanId,
        CustomerId = e.CustomerId,
        Status = e.Status,
        PreviousStatus = e.PreviousStatus,
        StartedAt = e.StartedAt,
        PeriodStart = e.CurrentPeriodStart,
        PeriodEnd = e.CurrentPeriodEnd,
        Sequence = e.Sequence,
        OccurredAt = e.OccurredAt,
    };

    public static SubscriptionChange From(SubscriptionEnded e) => new()
    {
        UserId = e.UserId,
        SubscriptionId = e.SubscriptionId,
        PlanId = e.PlanId,
        Status = e.Status,
        Sequence = e.Sequence,
        OccurredAt = e.OccurredAt,
        Ended = true,
    };
}
