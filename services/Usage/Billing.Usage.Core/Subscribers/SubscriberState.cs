using Billing.Catalog;

namespace Billing.Usage.Core.Subscribers;

/// <summary>
/// Usage's view of one user: the plan that decides their allowances, the subscription behind it and the dates its
/// windows hang on. Built from Payments' and Subscriptions' events; a user nobody told us about is on the free plan.
/// </summary>
public sealed record SubscriberState
{
    public required string UserId { get; init; }
    /// <summary>The plan whose allowances apply: the subscription's plan while it grants access, else the free plan.</summary>
    public required string PlanId { get; init; }
    public string? SubscriptionId { get; init; }
    /// <summary>Stripe's status of <see cref="SubscriptionId"/> as last applied.</summary>
    public string? Status { get; init; }
    public SubscriberAccess Access { get; init; }
    /// <summary>When the subscription started: monthly windows are anchored on it.</summary>
    public DateTimeOffset? Anchor { get; init; }
    public DateTimeOffset? PeriodStart { get; init; }
    public DateTimeOffset? PeriodEnd { get; init; }
    /// <summary>The <c>Sequence</c> of the last subscription event applied for <see cref="SubscriptionId"/>.</summary>
    public long Sequence { get; init; }
    /// <summary>When the last applied subscription event happened.</summary>
    public DateTimeOffset? StatusOccurredAt { get; init; }
    /// <summary>
    /// Access is suspended: the start of the past-due episode it suspends (Stripe's time); a return to <c>active</c> after
    /// it clears it.
    /// </summary>
    public DateTimeOffset? SuspendedAt { get; init; }
    /// <summary>
    /// The latest moment the subscription is known to have been paid up (<c>active</c> or <c>trialing</c>; Stripe's time):
    /// an applied status, or the previous status a later change names. A suspension of a past-due episode that began
    /// before it is over, whatever order the events arrived in.
    /// </summary>
    public DateTimeOffset? RecoveredAt { get; init; }
    /// <summary>The groups last seen on the user's own token.</summary>
    public IReadOnlyList<string> Groups { get; init; } = [];

    /// <summary>A user Usage has heard nothing about.</summary>
    public static SubscriberState New(string userId, BillingCatalog catalog) =>
        new() { UserId = userId, PlanId = catalog.FreePlan, Access = SubscriberAccess.None };

    /// <summary>The plan that applies; an id the catalog no longer has falls back to the free plan.</summary>
    public Plan EffectivePlan(BillingCatalog catalog) =>
        Access == SubscriberAccess.None ? catalog.Free : catalog.FindPlan(PlanId) ?? catalog.Free;
}
