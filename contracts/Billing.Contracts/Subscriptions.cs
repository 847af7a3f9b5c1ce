namespace Billing.Contracts;

/// <summary>A user's subscription first became <c>trialing</c> or <c>active</c>. Published by Payments.</summary>
public sealed record SubscriptionActivated
{
    /// <summary>Billing's user id (the JWT <c>sub</c>).</summary>
    public required string UserId { get; init; }
    /// <summary>Stripe subscription id (<c>sub_…</c>).</summary>
    public required string SubscriptionId { get; init; }
    /// <summary>Stripe customer id (<c>cus_…</c>).</summary>
    public required string CustomerId { get; init; }
    /// <summary>Catalog plan id, e.g. <c>pro</c>.</summary>
    public required string PlanId { get; init; }
    /// <summary>Stripe price id of the subscription's item.</summary>
    public required string PriceId { get; init; }
    /// <summary><c>day</c>, <c>week</c>, <c>month</c> or <c>year</c>.</summary>
    public required string Interval { get; init; }
    /// <summary>Intervals per period: 3 with <c>month</c> is quarterly.</summary>
    public required int IntervalCount { get; init; }
    /// <summary>Stripe status: <c>trialing</c> or <c>active</c>.</summary>
    public required string Status { get; init; }
    /// <summary>Start of the current billing period.</summary>
    public required DateTimeOffset CurrentPeriodStart { get; init; }
    /// <summary>End of the current billing period.</summary>
    public required DateTimeOffset CurrentPeriodEnd { get; init; }
    /// <summary>True when the subscription is already set to end at the period end (added later: false in older messages).</summary>
    public bool CancelAtPeriodEnd { get; init; }
    /// <summary>When the trial ends, if there is one.</summary>
    public DateTimeOffset? TrialEnd { get; init; }
    /// <summary>When the subscription started; monthly quota windows are anchored on it.</summary>
    public required DateTimeOffset StartedAt { get; init; }
    /// <summary>
    /// A change Stripe will make when the current period ends (a downgrade), or null when none is scheduled. Added later:
    /// absent in older messages.
    /// </summary>
    public Values.ScheduledPlanChange? ScheduledChange { get; init; }
    /// <summary>
    /// Per-subscription sequence assigned by Payments, increasing with every message about the subscription.
    /// Consumers apply a message only when its sequence is above the last one they applied, so RabbitMQ's
    /// redeliveries and reorderings cannot roll a subscription back.
    /// </summary>
    public required long Sequence { get; init; }
    /// <summary>When Stripe says it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event that caused it.</summary>
    public string? StripeEventId { get; init; }
}

/// <summary>Stripe's subscription changed: status, price or plan, period or cancel-at-period-end. Published by Payments.</summary>
public sealed record SubscriptionUpdated
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Stripe subscription id.</summary>
    public required string SubscriptionId { get; init; }
    /// <summary>Stripe customer id.</summary>
    public required string CustomerId { get; init; }
    /// <summary>Catalog plan id after the change.</summary>
    public required string PlanId { get; init; }
    /// <summary>Stripe price id after the change.</summary>
    public required string PriceId { get; init; }
    /// <summary>Billing interval after the change.</summary>
    public required string Interval { get; init; }
    /// <summary>Intervals per period after the change.</summary>
    public required int IntervalCount { get; init; }
    /// <summary>Stripe status after the change (<c>active</c>, <c>past_due</c>, <c>paused</c>, …).</summary>
    public required string Status { get; init; }
    /// <summary>Start of the current billing period.</summary>
    public required DateTimeOffset CurrentPeriodStart { get; init; }
    /// <summary>End of the current billing period.</summary>
    public required DateTimeOffset CurrentPeriodEnd { get; init; }
    /// <summary>True when the subscription ends at the period end.</summary>
    public required bool CancelAtPeriodEnd { get; init; }
    /// <summary>When the trial ends, if there is one.</summary>
    public DateTimeOffset? TrialEnd { get; init; }
    /// <summary>When the subscription started.</summary>
    public required DateTimeOffset StartedAt { get; init; }
    /// <summary>Status before the change, when Stripe told us.</summary>
    public string? PreviousStatus { get; init; }
    /// <summary>Plan before the change, when it changed.</summary>
    public string? PreviousPlanId { get; init; }
    /// <summary>
    /// A change Stripe will make when the current period ends (a downgrade), or null when none is scheduled. Added later:
    /// absent in older messages.
    /// </summary>
    public Values.ScheduledPlanChange? ScheduledChange { get; init; }
    /// <summary>
    /// Per-subscription sequence assigned by Payments, increasing with every message about the subscription.
    /// Consumers apply a message only when its sequence is above the last one they applied, so RabbitMQ's
    /// redeliveries and reorderings cannot roll a subscription back.
    /// </summary>
    public required long Sequence { get; init; }
    /// <summary>When Stripe says it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event that caused it.</summary>
    public string? StripeEventId { get; init; }
}

/// <summary>The subscription is over (canceled, expired). Published by Payments.</summary>
public sealed record SubscriptionEnded
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Stripe subscription id.</summary>
    public required string SubscriptionId { get; init; }
    /// <summary>Catalog plan id the subscription had.</summary>
    public required string PlanId { get; init; }
    /// <summary>Final Stripe status, usually <c>canceled</c>.</summary>
    public required string Status { get; init; }
    /// <summary>When it ended.</summary>
    public required DateTimeOffset EndedAt { get; init; }
    /// <summary>Stripe's cancellation reason, if any (<c>cancellation_requested</c>, <c>payment_failed</c>, …).</summary>
    public string? Reason { get; init; }
    /// <summary>
    /// Per-subscription sequence assigned by Payments, increasing with every message about the subscription.
    /// Consumers apply a message only when its sequence is above the last one they applied, so RabbitMQ's
    /// redeliveries and reorderings cannot roll a subscription back.
    /// </summary>
    public required long Sequence { get; init; }
    /// <summary>When Stripe says it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event that caused it.</summary>
    public string? StripeEventId { get; init; }
}

/// <summary>Past due longer than the catalog's grace period: access is suspended. Published by Subscriptions.</summary>
public sealed record SubscriptionAccessSuspended
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Stripe subscription id.</summary>
    public required string SubscriptionId { get; init; }
    /// <summary>Catalog plan id.</summary>
    public required string PlanId { get; init; }
    /// <summary>When the subscription went past due.</summary>
    public required DateTimeOffset PastDueSince { get; init; }
    /// <summary>
    /// The <c>Sequence</c> of the subscription update that began this past-due episode (subscription events carry the same
    /// sequence): an update with a higher sequence that is (or follows) <c>active</c> means the episode is over. Null
    /// from publishers older than this field.
    /// </summary>
    public long? PastDueSequence { get; init; }
    /// <summary>The end of the grace period that has now passed.</summary>
    public required DateTimeOffset GraceUntil { get; init; }
    /// <summary>When access was suspended.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
}

/// <summary>
/// Stripe announced that a trial ends soon (its <c>customer.subscription.trial_will_end</c>, three days before), for
/// notifications such as "add a card to keep your plan". Published by Payments.
/// </summary>
public sealed record SubscriptionTrialEndingAnnounced
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Stripe subscription id.</summary>
    public required string SubscriptionId { get; init; }
    /// <summary>Catalog plan id.</summary>
    public required string PlanId { get; init; }
    /// <summary>When the trial ends.</summary>
    public required DateTimeOffset TrialEnd { get; init; }
    /// <summary>Whether a payment method is on file to pay when the trial ends, when Stripe says.</summary>
    public bool? HasPaymentMethod { get; init; }
    /// <summary>When Stripe says it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event that caused it.</summary>
    public string? StripeEventId { get; init; }
}
