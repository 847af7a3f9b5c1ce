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
    /// Past-due episodes that began with an update of a lower <c>Sequence</c> are over: the highest sequence of an applied
    /// update that says <c>active</c>/<c>trialing</c>, or whose previous status was. Sequences only grow per
    /// subscription, so this holds whatever order the events arrived in (Stripe's times as Payments stamps them need not).
    /// </summary>
    public long? RecoveredSequence { get; init; }
    /// <summary>The <c>Sequence</c> of the update that began the suspended episode, when the suspension named it.</summary>
    public long? SuspendedSequence { get; init; }
    /// <summary>The latest payment of the current period's invoice or a later one's (Stripe's time): an episode that began before is over.</summary>
    public DateTimeOffset? PaidAt { get; init; }
    /// <summary>The groups last seen on the user's own token.</summary>
    public IReadOnlyList<string> Groups { get; init; } = [];

    /// <summary>A user Usage has heard nothing about.</summary>
    public static SubscriberState New(string userId, BillingCatalog catalog) =>
        new() { UserId = userId, PlanId = catalog.FreePlan, Access = SubscriberAccess.None };

    /// <summary>The access consumes see from the user's own groups: a member of an unlimited group is never suspended.</summary>
    public SubscriberAccess AccessFor(BillingCatalog catalog) =>
        Access == SubscriberAccess.Suspended && catalog.IsUnlimited(Groups) ? SubscriberAccess.Full : Access;

    /// <summary>The plan that applies; an id the catalog no longer has falls back to the free plan.</summary>
    public Plan EffectivePlan(BillingCatalog catalog) =>
        Access == SubscriberAccess.None ? catalog.Free : catalog.FindPlan(PlanId) ?? catalog.Free;
}
