using System.Text.Json.Nodes;

namespace Billing.StripeSimulator.Domain;

public sealed class Customer
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public string? Email { get; set; }
    public string? Name { get; set; }
    public string? Description { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = new();
    /// <summary>The test card number on file; decides how later (off-session) charges go.</summary>
    public string? Card { get; set; }
    public string? PaymentMethodId { get; set; }
}

public sealed class Product
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public long Updated { get; set; }
    public required string Name { get; set; }
    public string? Description { get; set; }
    public bool Active { get; set; } = true;
    public string? DefaultPriceId { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = new();
}

public sealed class Price
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string ProductId { get; init; }
    /// <summary>The unit amount in minor units when it is whole (<c>unit_amount</c>); see <see cref="UnitAmountDecimal"/>.</summary>
    public long UnitAmount { get; init; }
    /// <summary>Set only for a fractional unit amount (<c>unit_amount_decimal</c> such as <c>0.5</c>); null = <see cref="UnitAmount"/>.</summary>
    public decimal? UnitAmountDecimal { get; init; }
    public required string Currency { get; init; }
    public string? Interval { get; init; }
    public int IntervalCount { get; init; } = 1;
    public string? LookupKey { get; set; }
    public string? Nickname { get; set; }
    public bool Active { get; set; } = true;
    public Dictionary<string, string> Metadata { get; set; } = new();
    /// <summary><c>licensed</c> (billed ahead, per quantity) or <c>metered</c> (billed in arrears, per the usage its meter aggregates).</summary>
    public string UsageType { get; init; } = "licensed";
    /// <summary>The billing meter of a metered price (<c>recurring.meter</c>).</summary>
    public string? MeterId { get; init; }
    public bool IsRecurring => Interval is not null;
    public bool IsMetered => UsageType == "metered";
    /// <summary>The unit amount in minor units, fractional or not.</summary>
    public decimal UnitPrice => UnitAmountDecimal ?? UnitAmount;

    /// <summary>What <paramref name="quantity"/> units cost, rounded to the nearest minor unit (half away from zero).</summary>
    public long AmountFor(decimal quantity) => (long)Math.Round(UnitPrice * quantity, MidpointRounding.AwayFromZero);
}

/// <summary>A billing meter (<c>billing.meter</c>): it sums (or counts, or takes the last of) the meter events named
/// <see cref="EventName"/> per customer; a metered price bills that aggregate.</summary>
public sealed class Meter
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public long Updated { get; set; }
    public required string DisplayName { get; set; }
    public required string EventName { get; init; }
    /// <summary><c>sum</c>, <c>count</c> or <c>last</c>.</summary>
    public string Formula { get; init; } = "sum";
    /// <summary>The payload key that holds the customer id (<c>customer_mapping.event_payload_key</c>).</summary>
    public string CustomerPayloadKey { get; init; } = "stripe_customer_id";
    /// <summary>The payload key that holds the value (<c>value_settings.event_payload_key</c>).</summary>
    public string ValuePayloadKey { get; init; } = "value";
    public string? EventTimeWindow { get; init; }
    /// <summary><c>active</c> or <c>inactive</c>.</summary>
    public string Status { get; set; } = "active";
    public long? DeactivatedAt { get; set; }
    public bool IsActive => Status == "active";
}

public sealed class LineItem
{
    public required string Id { get; init; }
    public required string PriceId { get; init; }
    /// <summary>0 for a metered price, which has no quantity.</summary>
    public long Quantity { get; init; } = 1;
}

public sealed class CheckoutSession
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string Mode { get; init; }
    public string? CustomerId { get; set; }
    public string? CustomerEmail { get; init; }
    public string? ClientReferenceId { get; init; }
    public List<LineItem> LineItems { get; init; } = [];
    public string? SuccessUrl { get; init; }
    public string? CancelUrl { get; init; }
    public Dictionary<string, string> Metadata { get; init; } = new();
    public Dictionary<string, string> SubscriptionMetadata { get; init; } = new();
    public long? TrialPeriodDays { get; init; }
    /// <summary><c>always</c>, or <c>if_required</c>: a trial starts without a card (nothing is due at checkout).</summary>
    public string PaymentMethodCollection { get; init; } = "always";
    /// <summary><c>subscription_data[trial_settings][end_behavior][missing_payment_method]</c>.</summary>
    public string MissingPaymentMethod { get; init; } = "create_invoice";
    public Dictionary<string, string> PaymentIntentMetadata { get; init; } = new();
    public bool? AllowPromotionCodes { get; init; }
    public long ExpiresAt { get; init; }
    public string Status { get; set; } = "open";
    public string PaymentStatus { get; set; } = "unpaid";
    public string? SubscriptionId { get; set; }
    public string? PaymentIntentId { get; set; }
    public string? InvoiceId { get; set; }
    public long AmountTotal { get; init; }
    public required string Currency { get; init; }
    public string? Url { get; set; }
    /// <summary>Set while a 3-D Secure challenge is shown.</summary>
    public string? PendingCard { get; set; }
    public bool AwaitingSettlement { get; set; }
}

public sealed class PortalSession
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string CustomerId { get; init; }
    public string? ReturnUrl { get; init; }
    public required string Url { get; init; }
}

public sealed class SubscriptionItem
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string PriceId { get; set; }
    /// <summary>0 for a metered item, which has no quantity.</summary>
    public long Quantity { get; set; } = 1;
    /// <summary>A metered item (its price is metered; an item never changes between licensed and metered).</summary>
    public bool Metered { get; init; }
    /// <summary>Metered items: usage before this moment is billed (or was dropped); the next bill counts from here.</summary>
    public long UsageStart { get; set; }
    public long PeriodStart { get; set; }
    public long PeriodEnd { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = new();
}

/// <summary>A pending invoice item of a subscription, billed on its next invoice: a proration, or the usage of a metered
/// item removed with <c>create_prorations</c>.</summary>
public sealed class PendingProration
{
    public required string Description { get; init; }
    public long Amount { get; init; }
    public required string PriceId { get; init; }
    public long Quantity { get; init; }
    public long PeriodStart { get; init; }
    public long PeriodEnd { get; init; }
    /// <summary>false for metered usage.</summary>
    public bool Proration { get; init; } = true;
    /// <summary>The item it belongs to; null = the subscription's licensed item.</summary>
    public string? SubscriptionItemId { get; init; }
    public decimal? QuantityDecimal { get; init; }
    public decimal? UnitAmountDecimal { get; init; }
}

public sealed class Subscription
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string CustomerId { get; init; }
    public required string Currency { get; init; }
    public string Status { get; set; } = "active";
    public List<SubscriptionItem> Items { get; init; } = [];
    public long StartDate { get; init; }
    /// <summary>The moment periods are counted from (day of month, time of day).</summary>
    public long BillingCycleAnchor { get; set; }
    public long? TrialStart { get; set; }
    public long? TrialEnd { get; set; }
    public bool TrialWillEndSent { get; set; }
    /// <summary>What the trial's end does when the customer has no payment method: <c>create_invoice</c> (its payment
    /// fails: past due), <c>cancel</c> or <c>pause</c>.</summary>
    public string MissingPaymentMethod { get; set; } = "create_invoice";
    public bool CancelAtPeriodEnd { get; set; }
    public long? CancelAt { get; set; }
    public long? CanceledAt { get; set; }
    public long? EndedAt { get; set; }
    public string? CancellationReason { get; set; }
    public string? LatestInvoiceId { get; set; }
    /// <summary>The subscription schedule managing it (<c>schedule</c>), while one is attached.</summary>
    public string? ScheduleId { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = new();
    public List<PendingProration> PendingProrations { get; } = [];
    /// <summary>The licensed item: the plan's price, whose period is the subscription's (every item shares it).</summary>
    public SubscriptionItem Item => Items.First(i => !i.Metered);
    public bool IsEnded => Status is "canceled" or "incomplete_expired";
}

public sealed class SchedulePhaseItem
{
    public required string PriceId { get; init; }
    /// <summary>0 for a metered price, which has no quantity.</summary>
    public long Quantity { get; init; } = 1;
    public Dictionary<string, string> Metadata { get; init; } = new();
}

/// <summary>One phase of a subscription schedule: what the subscription holds from <see cref="StartDate"/> to
/// <see cref="EndDate"/>. Its <see cref="Metadata"/> is merged into the subscription's when the phase starts.</summary>
public sealed class SchedulePhase
{
    public long StartDate { get; init; }
    public long EndDate { get; init; }
    public List<SchedulePhaseItem> Items { get; init; } = [];
    public Dictionary<string, string> Metadata { get; init; } = new();
    public string ProrationBehavior { get; init; } = "create_prorations";
    /// <summary>null, <c>automatic</c> or <c>phase_start</c>.</summary>
    public string? BillingCycleAnchor { get; init; }
    public long? TrialEnd { get; init; }
}

public sealed class SubscriptionSchedule
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string CustomerId { get; init; }
    /// <summary>The subscription it manages; null once released (then <see cref="ReleasedSubscriptionId"/>).</summary>
    public string? SubscriptionId { get; set; }
    /// <summary><c>not_started</c>, <c>active</c>, <c>completed</c>, <c>released</c> or <c>canceled</c>.</summary>
    public string Status { get; set; } = "active";
    /// <summary>Past, current and future phases, in order.</summary>
    public List<SchedulePhase> Phases { get; set; } = [];
    public int CurrentPhaseIndex { get; set; }
    /// <summary><c>release</c> or <c>cancel</c>.</summary>
    public string EndBehavior { get; set; } = "release";
    public long? ReleasedAt { get; set; }
    public string? ReleasedSubscriptionId { get; set; }
    public long? CanceledAt { get; set; }
    public long? CompletedAt { get; set; }
    public Dictionary<string, string> Metadata { get; set; } = new();
    public bool IsLive => Status is "not_started" or "active";
    public SchedulePhase CurrentPhase => Phases[CurrentPhaseIndex];
}

public sealed class InvoiceLine
{
    public required string Id { get; init; }
    public long Amount { get; init; }
    public required string Description { get; init; }
    public string? PriceId { get; init; }
    public long Quantity { get; init; } = 1;
    public long PeriodStart { get; init; }
    public long PeriodEnd { get; init; }
    public bool Proration { get; init; }
    public string? SubscriptionItemId { get; init; }
    /// <summary>Metered usage: the aggregated quantity (it may be fractional); null = <see cref="Quantity"/>.</summary>
    public decimal? QuantityDecimal { get; init; }
    /// <summary>Metered usage: the price's unit amount; null = <see cref="Amount"/> / <see cref="Quantity"/>.</summary>
    public decimal? UnitAmountDecimal { get; init; }
}

public sealed class Invoice
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string CustomerId { get; init; }
    public string? SubscriptionId { get; init; }
    public Dictionary<string, string>? SubscriptionMetadata { get; init; }
    public required string BillingReason { get; init; }
    public required string Currency { get; init; }
    public string Status { get; set; } = "draft";
    public List<InvoiceLine> Lines { get; init; } = [];
    public long Total => Lines.Sum(l => l.Amount);
    public long AmountDue => Math.Max(0, Total);
    public long AmountPaid { get; set; }
    public int AttemptCount { get; set; }
    public bool Attempted { get; set; }
    public long? NextPaymentAttempt { get; set; }
    public long PeriodStart { get; init; }
    public long PeriodEnd { get; init; }
    public long? FinalizedAt { get; set; }
    public long? PaidAt { get; set; }
    public long? VoidedAt { get; set; }
    public long? MarkedUncollectibleAt { get; set; }
    public string? Number { get; set; }
    public string? PaymentIntentId { get; set; }
    public string? InvoicePaymentId { get; set; }
    public bool IsPreview { get; init; }
}

public sealed class InvoicePayment
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public required string InvoiceId { get; init; }
    public required string PaymentIntentId { get; init; }
    public long AmountRequested { get; init; }
    public long? AmountPaid { get; set; }
    public required string Currency { get; init; }
    public string Status { get; set; } = "open";
    public long? PaidAt { get; set; }
}

public sealed class PaymentIntent
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public long Amount { get; init; }
    public required string Currency { get; init; }
    public string? CustomerId { get; init; }
    public string Status { get; set; } = "requires_payment_method";
    public string? LatestChargeId { get; set; }
    public string? Description { get; init; }
    public Dictionary<string, string> Metadata { get; set; } = new();
    public string? PaymentMethodId { get; set; }
    public long AmountReceived { get; set; }
    public string? LastErrorCode { get; set; }
    public string? LastErrorMessage { get; set; }
    public string? LastErrorDeclineCode { get; set; }
    public string PaymentMethodType { get; set; } = "card";
}

public sealed class Charge
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public long Amount { get; init; }
    public required string Currency { get; init; }
    public string? CustomerId { get; init; }
    public required string PaymentIntentId { get; init; }
    public string Status { get; set; } = "succeeded";
    public long AmountRefunded { get; set; }
    /// <summary>Whether a dispute was ever opened on the charge (stays true once it is closed, like Stripe's).</summary>
    public bool Disputed { get; set; }
    public string? FailureCode { get; init; }
    public string? FailureMessage { get; init; }
    public string? DeclineCode { get; init; }
    public string? Description { get; init; }
    public Dictionary<string, string> Metadata { get; set; } = new();
    public string? PaymentMethodId { get; init; }
    public string Last4 { get; init; } = "4242";
    public string PaymentMethodType { get; init; } = "card";
    public bool Paid => Status == "succeeded";
}

public sealed class Refund
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public long Amount { get; init; }
    public required string Currency { get; init; }
    public required string ChargeId { get; init; }
    public required string PaymentIntentId { get; init; }
    public string? Reason { get; init; }
    public Dictionary<string, string> Metadata { get; set; } = new();
    /// <summary><c>succeeded</c>, or <c>failed</c> once <c>/_sim/refunds/{id}/fail</c> made it fail (the card was closed).</summary>
    public string Status { get; set; } = "succeeded";
    public string? FailureReason { get; set; }
}

/// <summary>A chargeback opened through <c>/_sim/charges/{id}/dispute</c>.</summary>
public sealed class Dispute
{
    public required string Id { get; init; }
    public long Created { get; init; }
    public long Amount { get; init; }
    public required string Currency { get; init; }
    public required string ChargeId { get; init; }
    public required string PaymentIntentId { get; init; }
    public required string Reason { get; init; }
    /// <summary><c>needs_response</c> until closed as <c>won</c> or <c>lost</c>.</summary>
    public string Status { get; set; } = "needs_response";
    public long DueBy { get; init; }
    public Dictionary<string, string> Metadata { get; set; } = new();
}

public sealed class MeterEvent
{
    public required string Identifier { get; init; }
    public required string EventName { get; init; }
    public required string CustomerId { get; init; }
    public required string Value { get; init; }
    public long Timestamp { get; init; }
    public long Created { get; init; }
    public Dictionary<string, string> Payload { get; init; } = new();
    /// <summary>
    /// Set when Stripe rejected the event after accepting it (an error report: <c>meter_event_customer_not_found</c>,
    /// <c>no_meter</c>, …): a rejected event counts in no meter's usage. Set by <c>/_sim/meter_events/{identifier}/reject</c>.
    /// </summary>
    public string? RejectedWith { get; set; }
}

public sealed class DeliveryAttempt
{
    public long At { get; init; }
    public int? Status { get; init; }
    public string? Error { get; init; }
}

public sealed class SimEvent
{
    public required string Id { get; init; }
    public long Sequence { get; init; }
    public required string Type { get; init; }
    public long Created { get; init; }
    public required JsonObject Object { get; init; }
    public JsonObject? PreviousAttributes { get; init; }
    public string? RequestIdempotencyKey { get; init; }
    public List<DeliveryAttempt> Attempts { get; } = [];
    public bool Delivered { get; set; }
    public bool Dropped { get; set; }
}
