using Billing.Catalog;

namespace Billing.Subscriptions.Core.Subscriptions;

/// <summary>What Billing knows of one Stripe subscription, as the last applied event said.</summary>
public sealed record SubscriptionRecord
{
    public required string SubscriptionId { get; init; }
    public required string UserId { get; init; }
    public required string CustomerId { get; init; }
    public required string PlanId { get; init; }
    public required string PriceId { get; init; }
    public required string Interval { get; init; }
    public required int IntervalCount { get; init; }
    /// <summary>Stripe's status, as is.</summary>
    public required string StripeStatus { get; init; }
    public required DateTimeOffset CurrentPeriodStart { get; init; }
    public required DateTimeOffset CurrentPeriodEnd { get; init; }
    public required bool CancelAtPeriodEnd { get; init; }
    public DateTimeOffset? TrialEnd { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public DateTimeOffset? EndedAt { get; init; }
    public string? EndedReason { get; init; }
    public DateTimeOffset? PastDueSince { get; init; }
    /// <summary>The <see cref="Sequence"/> of the update that began the current past-due episode.</summary>
    public long? PastDueSequence { get; init; }
    public DateTimeOffset? GraceUntil { get; init; }
    public DateTimeOffset? SuspendedAt { get; init; }
    public required long Sequence { get; init; }
    /// <summary>The plan Stripe moves the subscription to when the current period ends (a downgrade), if any.</summary>
    public string? ScheduledPlanId { get; init; }
    public string? ScheduledPriceId { get; init; }
    public string? ScheduledInterval { get; init; }
    public int? ScheduledIntervalCount { get; init; }
    public DateTimeOffset? ScheduledAt { get; init; }

    /// <summary>This record with the scheduled change of a message (none when the message has none).</summary>
    public SubscriptionRecord WithScheduledChange(Billing.Contracts.Values.ScheduledPlanChange? change) => this with
    {
        ScheduledPlanId = change?.PlanId, ScheduledPriceId = change?.PriceId, ScheduledInterval = change?.Interval,
        ScheduledIntervalCount = change?.IntervalCount, ScheduledAt = change?.EffectiveAt,
    };
}

/// <summary>A plan change that waits for the period end, as <c>GET /api/subscriptions/me</c> shows it.</summary>
public sealed record ScheduledChangeView(string PlanId, string Interval, int IntervalCount, DateTimeOffset EffectiveAt);

/// <summary>The answer of <c>GET /api/subscriptions/me</c> (API.md).</summary>
public sealed record SubscriptionView(
    string PlanId,
    string Status,
    string? Interval,
    int? IntervalCount,
    DateTimeOffset? CurrentPeriodEnd,
    bool CancelAtPeriodEnd,
    DateTimeOffset? TrialEnd,
    DateTimeOffset? GraceUntil,
    bool Unlimited,
    ScheduledChangeView? ScheduledChange = null);

/// <summary>How Stripe's subscription states read to a Billing user.</summary>
public static class SubscriptionStatus
{
    /// <summary>Stripe statuses in which the subscription still exists and blocks a second checkout.</summary>
    public static readonly IReadOnlySet<string> Live = new HashSet<string>(StringComparer.Ordinal)
        { "trialing", "active", "past_due", "unpaid", "paused" };

    /// <summary>Stripe statuses after which the subscription is over.</summary>
    public static readonly IReadOnlySet<string> Over = new HashSet<string>(StringComparer.Ordinal)
        { "canceled", "incomplete_expired" };

    /// <summary>
    /// API status: <c>trialing</c>, <c>active</c>, <c>past_due</c> (also Stripe's <c>unpaid</c> and <c>paused</c>: a payment
    /// problem, no access once grace is over), <c>expired</c> (ended at the period end it was cancelled for),
    /// <c>canceled</c> (ended before its period end: refunded, failed payments, cancelled at once) or <c>none</c>.
    /// </summary>
    public static string ForUser(SubscriptionRecord? subscription)
    {
        if (subscription is null)
        {
            return "none";
        }
        return subscription.StripeStatus switch
        {
            "trialing" => "trialing",
            "active" => "active",
            "past_due" or "unpaid" or "paused" => "past_due",
            "canceled" => subscription.EndedAt is { } ended && ended >= subscription.CurrentPeriodEnd.AddMinutes(-1) ? "expired" : "canceled",
            _ => "none", // incomplete, incomplete_expired: never started
        };
    }

    /// <summary>The view a user sees: their live subscription, else the free plan.</summary>
    public static SubscriptionView View(SubscriptionRecord? subscription, BillingCatalog catalog, bool unlimited)
    {
        var status = ForUser(subscription);
        if (subscription is null || status == "none")
        {
            return new SubscriptionView(catalog.FreePlan, "none", null, null, null, false, null, null, unlimited);
        }
        var over = status is "expired" or "canceled";
        return new SubscriptionView(
            over ? catalog.FreePlan : subscription.PlanId,
            status,
            subscription.Interval,
            subscription.IntervalCount,
            subscription.CurrentPeriodEnd,
            !over && subscription.CancelAtPeriodEnd,
            subscription.TrialEnd,
            status == "past_due" ? subscription.GraceUntil : null,
            unlimited,
            !over && !subscription.CancelAtPeriodEnd && subscription is { ScheduledPlanId: { } plan, ScheduledInterval: { } interval, ScheduledAt: { } at }
                ? new ScheduledChangeView(plan, interval, subscription.ScheduledIntervalCount ?? 1, at)
                : null);
    }
}
