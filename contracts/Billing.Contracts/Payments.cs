namespace Billing.Contracts;

/// <summary>An invoice was paid: a first payment, a renewal, a proration. Renewals reset quotas. Published by Payments.</summary>
public sealed record InvoicePaid
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Stripe invoice id (<c>in_…</c>).</summary>
    public required string InvoiceId { get; init; }
    /// <summary>Stripe customer id.</summary>
    public required string CustomerId { get; init; }
    /// <summary>The subscription the invoice belongs to, if any.</summary>
    public string? SubscriptionId { get; init; }
    /// <summary>Catalog plan id of that subscription, if known.</summary>
    public string? PlanId { get; init; }
    /// <summary>Stripe's billing reason: <c>subscription_create</c>, <c>subscription_cycle</c>, <c>subscription_update</c>, <c>manual</c>.</summary>
    public required string BillingReason { get; init; }
    /// <summary>Amount paid in the currency's minor unit.</summary>
    public required long AmountPaid { get; init; }
    /// <summary>Lowercase ISO currency.</summary>
    public required string Currency { get; init; }
    /// <summary>Start of the subscription period the invoice pays for.</summary>
    public required DateTimeOffset PeriodStart { get; init; }
    /// <summary>End of the subscription period the invoice pays for.</summary>
    public required DateTimeOffset PeriodEnd { get; init; }
    /// <summary>The payment intent that paid it, if any.</summary>
    public string? PaymentIntentId { get; init; }
    /// <summary>When Stripe says it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event that caused it.</summary>
    public string? StripeEventId { get; init; }
}

/// <summary>A payment attempt for an invoice failed. Published by Payments.</summary>
public sealed record InvoicePaymentFailed
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Stripe invoice id.</summary>
    public required string InvoiceId { get; init; }
    /// <summary>Stripe customer id.</summary>
    public required string CustomerId { get; init; }
    /// <summary>The subscription the invoice belongs to, if any.</summary>
    public string? SubscriptionId { get; init; }
    /// <summary>Amount due in the currency's minor unit.</summary>
    public required long AmountDue { get; init; }
    /// <summary>Lowercase ISO currency.</summary>
    public required string Currency { get; init; }
    /// <summary>How many attempts Stripe has made.</summary>
    public required int AttemptCount { get; init; }
    /// <summary>When Stripe will try again; null when it will not.</summary>
    public DateTimeOffset? NextPaymentAttempt { get; init; }
    /// <summary>When Stripe says it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event that caused it.</summary>
    public string? StripeEventId { get; init; }
}

/// <summary>A token pack checkout was paid. Published by Payments; Wallet grants the tokens once.</summary>
public sealed record TokenPackPurchased
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Catalog pack id.</summary>
    public required string PackId { get; init; }
    /// <summary>Tokens bought.</summary>
    public required long Tokens { get; init; }
    /// <summary>
    /// Days the tokens last, as the checkout sold them: 0 when they never expire; null for checkouts made before Billing
    /// recorded it (the catalog's pack decides).
    /// </summary>
    public int? ExpiresAfterDays { get; init; }
    /// <summary>Stripe checkout session id; the grant's idempotency reference.</summary>
    public required string CheckoutSessionId { get; init; }
    /// <summary>The payment intent that paid it.</summary>
    public string? PaymentIntentId { get; init; }
    /// <summary>Amount paid in the currency's minor unit.</summary>
    public required long Amount { get; init; }
    /// <summary>Lowercase ISO currency.</summary>
    public required string Currency { get; init; }
    /// <summary>When Stripe says it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event that caused it.</summary>
    public string? StripeEventId { get; init; }
}

/// <summary>A charge was refunded, fully or partly. Published by Payments.</summary>
public sealed record PaymentRefunded
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Billing's payment id.</summary>
    public required string PaymentId { get; init; }
    /// <summary><c>subscription</c> or <c>token_pack</c>.</summary>
    public required string Kind { get; init; }
    /// <summary>Stripe charge id.</summary>
    public required string ChargeId { get; init; }
    /// <summary>Stripe payment intent id, if any.</summary>
    public string? PaymentIntentId { get; init; }
    /// <summary>The charge's whole amount.</summary>
    public required long Amount { get; init; }
    /// <summary>Everything refunded on the charge so far (cumulative).</summary>
    public required long AmountRefunded { get; init; }
    /// <summary>Lowercase ISO currency.</summary>
    public required string Currency { get; init; }
    /// <summary>True once the whole charge is refunded.</summary>
    public required bool FullyRefunded { get; init; }
    /// <summary>
    /// Refunds of the charge that failed (a closed card) or were canceled: their amount came back to the charge and is not
    /// in <see cref="AmountRefunded"/>. It only grows, and between two of its values <see cref="AmountRefunded"/> only
    /// grows, so (<c>RefundsUndone</c>, <c>AmountRefunded</c>) orders a charge's refund messages however they arrive.
    /// </summary>
    public int RefundsUndone { get; init; }
    /// <summary>Subscription of a subscription payment.</summary>
    public string? SubscriptionId { get; init; }
    /// <summary>Pack of a token pack payment.</summary>
    public string? PackId { get; init; }
    /// <summary>Tokens the pack granted, for a token pack payment.</summary>
    public long? PackTokens { get; init; }
    /// <summary>When Stripe says it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event that caused it.</summary>
    public string? StripeEventId { get; init; }
}

/// <summary>
/// A customer disputed a charge with their bank (a chargeback): Stripe has taken the disputed amount back. Published by
/// Payments on Stripe's <c>charge.dispute.created</c>; Subscriptions ends the subscription at once, Wallet takes back the
/// pack's tokens, as for a full refund.
/// </summary>
public sealed record PaymentDisputed
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Billing's payment id.</summary>
    public required string PaymentId { get; init; }
    /// <summary><c>subscription</c> or <c>token_pack</c>.</summary>
    public required string Kind { get; init; }
    /// <summary>Stripe dispute id.</summary>
    public required string DisputeId { get; init; }
    /// <summary>Stripe charge id.</summary>
    public required string ChargeId { get; init; }
    /// <summary>Stripe payment intent id, if any.</summary>
    public string? PaymentIntentId { get; init; }
    /// <summary>The payment's whole amount.</summary>
    public required long Amount { get; init; }
    /// <summary>The amount disputed.</summary>
    public required long AmountDisputed { get; init; }
    /// <summary>Lowercase ISO currency.</summary>
    public required string Currency { get; init; }
    /// <summary>The bank's reason, as Stripe gives it (<c>fraudulent</c>, <c>product_not_received</c>, …).</summary>
    public string? Reason { get; init; }
    /// <summary>Subscription of a subscription payment.</summary>
    public string? SubscriptionId { get; init; }
    /// <summary>Pack of a token pack payment.</summary>
    public string? PackId { get; init; }
    /// <summary>Tokens the pack granted, for a token pack payment.</summary>
    public long? PackTokens { get; init; }
    /// <summary>When Stripe says it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event that caused it.</summary>
    public string? StripeEventId { get; init; }
}

/// <summary>
/// A chargeback is over (Stripe's <c>charge.dispute.closed</c>). Published by Payments for a Billing payment; Wallet
/// gives a pack's tokens back when the dispute was won (the money came back), less what refunds take.
/// </summary>
public sealed record PaymentDisputeClosed
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Billing's payment id.</summary>
    public required string PaymentId { get; init; }
    /// <summary><c>subscription</c> or <c>token_pack</c>.</summary>
    public required string Kind { get; init; }
    /// <summary>Stripe dispute id.</summary>
    public required string DisputeId { get; init; }
    /// <summary>Stripe charge id.</summary>
    public required string ChargeId { get; init; }
    /// <summary>Stripe payment intent id, if any.</summary>
    public string? PaymentIntentId { get; init; }
    /// <summary>How it ended, as Stripe says: <c>won</c> (the money is back), <c>lost</c>, or <c>warning_closed</c> (an inquiry that never became a chargeback).</summary>
    public required string Status { get; init; }
    /// <summary>The payment's whole amount.</summary>
    public required long Amount { get; init; }
    /// <summary>Lowercase ISO currency.</summary>
    public required string Currency { get; init; }
    /// <summary>Subscription of a subscription payment.</summary>
    public string? SubscriptionId { get; init; }
    /// <summary>Pack of a token pack payment.</summary>
    public string? PackId { get; init; }
    /// <summary>Tokens the pack granted, for a token pack payment.</summary>
    public long? PackTokens { get; init; }
    /// <summary>When Stripe says it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event that caused it.</summary>
    public string? StripeEventId { get; init; }
}
