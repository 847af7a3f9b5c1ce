namespace Billing.Payments.Core.Webhooks;

/// <summary>The Stripe event types Billing acts on (API.md "Payments"); every other type is stored and ignored.</summary>
public static class StripeEventTypes
{
    public const string CheckoutCompleted = "checkout.session.completed";
    public const string CheckoutAsyncSucceeded = "checkout.session.async_payment_succeeded";
    public const string CheckoutAsyncFailed = "checkout.session.async_payment_failed";
    public const string SubscriptionCreated = "customer.subscription.created";
    public const string SubscriptionUpdated = "customer.subscription.updated";
    public const string SubscriptionDeleted = "customer.subscription.deleted";
    public const string SubscriptionTrialWillEnd = "customer.subscription.trial_will_end";
    public const string SubscriptionPaused = "customer.subscription.paused";
    public const string SubscriptionResumed = "customer.subscription.resumed";
    public const string InvoicePaid = "invoice.paid";
    public const string InvoicePaymentFailed = "invoice.payment_failed";
    public const string ChargeRefunded = "charge.refunded";
    // A refund that failed (a closed card) or was canceled: the money was not returned after all.
    public const string ChargeRefundUpdated = "charge.refund.updated";
    public const string ChargeDisputeCreated = "charge.dispute.created";
    public const string ChargeDisputeClosed = "charge.dispute.closed";
    // An inquiry (warning_*) that becomes a chargeback: Stripe withdraws the funds then.
    public const string ChargeDisputeFundsWithdrawn = "charge.dispute.funds_withdrawn";
    // A downgrade to another billing interval waits in a subscription schedule: its changes re-read the subscription.
    public const string ScheduleCreated = "subscription_schedule.created";
    public const string ScheduleUpdated = "subscription_schedule.updated";
    public const string ScheduleReleased = "subscription_schedule.released";
    public const string ScheduleCanceled = "subscription_schedule.canceled";
    public const string ScheduleCompleted = "subscription_schedule.completed";

    public static readonly IReadOnlySet<string> Handled = new HashSet<string>(StringComparer.Ordinal)
    {
        CheckoutCompleted, CheckoutAsyncSucceeded, CheckoutAsyncFailed,
        SubscriptionCreated, SubscriptionUpdated, SubscriptionDeleted, SubscriptionTrialWillEnd, SubscriptionPaused, SubscriptionResumed,
        InvoicePaid, InvoicePaymentFailed, ChargeRefunded, ChargeRefundUpdated, ChargeDisputeCreated, ChargeDisputeClosed, ChargeDisputeFundsWithdrawn,
        ScheduleCreated, ScheduleUpdated, ScheduleReleased, ScheduleCanceled, ScheduleCompleted,
    };
}

/// <summary>The few fields of an event envelope the ingestor needs before acknowledging it.</summary>
public sealed record StripeEventEnvelope(string Id, string Type, DateTimeOffset Created, string? ApiVersion, bool Livemode,
    string? ObjectType, string? ObjectId, string OrderKey);
