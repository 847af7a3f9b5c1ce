using Billing.Contracts;
using Billing.ServiceDefaults.Messaging;
using Billing.ServiceDefaults.Stripe;
using Billing.Subscriptions.Api.Persistence;
using Billing.Subscriptions.Core.Subscriptions;
using MassTransit;
using Stripe;

namespace Billing.Subscriptions.Api.Consumers;

/// <summary>
/// A full refund of the payment for the current period ends the subscription's access: Subscriptions cancels it in Stripe
/// at once (no proration: the money is back already); Stripe's <c>customer.subscription.deleted</c> then ends it
/// everywhere. A partial refund is a goodwill gesture and changes no access; nor does a full refund of a payment that did
/// not pay for the current period — an earlier period's, or an upgrade's proration (the period itself stays paid).
/// A chargeback (<see cref="PaymentDisputed"/>) of any of its payments ends it at once too: the customer has taken the
/// money back through their bank, and a renewal charged to that card would be disputed again.
/// </summary>
public sealed class RefundConsumer(Inbox inbox, IStripeClient stripe, StripeCalls calls) : IConsumer<PaymentRefunded>, IConsumer<PaymentDisputed>
{
    public Task Consume(ConsumeContext<PaymentDisputed> context)
    {
        var m = context.Message;
        if (m is not { Kind: "subscription", SubscriptionId: { } subscriptionId })
        {
            return Task.CompletedTask;
        }
        return inbox.HandleOnceAsync(context, GetType(), async (connection, tx, ct) =>
        {
            if (await LiveAsync(connection, tx, subscriptionId, ct) is null)
            {
                return;
            }
            await CancelNowAsync(subscriptionId, $"billing-dispute-cancel-{m.DisputeId}", ct);
            await SubscriptionStore.RecordAsync(connection, tx, m.UserId, subscriptionId, "disputed",
                $"payment {m.PaymentId} disputed ({m.AmountDisputed} {m.Currency}, {m.Reason ?? "no reason given"}); subscription cancelled now",
                "stripe", m.StripeEventId, m.OccurredAt, ct);
        });
    }

    /// <summary>
    /// The stored subscription, locked; null when it has ended. One not stored yet (its activation is still in another
    /// queue) is waited for: a payment of it exists, so it will be.
    /// </summary>
    private static async Task<SubscriptionRecord?> LiveAsync(Npgsql.NpgsqlConnection connection, Npgsql.NpgsqlTransaction tx, string subscriptionId,
        CancellationToken ct)
    {
        var subscription = await SubscriptionStore.GetForUpdateAsync(connection, tx, subscriptionId, ct)
            ?? throw new RetryLaterException($"Subscription {subscriptionId} is not stored yet; its payment's refund or dispute waits for it.");
        return SubscriptionStatus.Over.Contains(subscription.StripeStatus) ? null : subscription;
    }

    private Task CancelNowAsync(string subscriptionId, string idempotencyKey, CancellationToken ct) =>
        calls.RunAsync(c => new SubscriptionService(stripe).CancelAsync(subscriptionId, new SubscriptionCancelOptions { Prorate = false },
            new RequestOptions { IdempotencyKey = idempotencyKey }, c), ct);

    public Task Consume(ConsumeContext<PaymentRefunded> context)
    {
        var m = context.Message;
        if (m is not { Kind: "subscription", FullyRefunded: true, SubscriptionId: { } subscriptionId })
        {
            return Task.CompletedTask;
        }
        return inbox.HandleOnceAsync(context, GetType(), async (connection, tx, ct) =>
        {
            if (await LiveAsync(connection, tx, subscriptionId, ct) is null)
            {
                return;
            }
            // The payment's id is its invoice's. Its plan lines say which period it paid (a proration has none): one that
            // ends after the current period started (Stripe's, not the stored one, which may not have seen a renewal yet)
            // is this period's when it starts with it, or when it would have lasted to the current period's end — a change
            // of interval cut it short, and the credit for its unused time covers the whole current period (yearly to a
            // monthly plan). One cut short that would have ended sooner (monthly to yearly) did not: the change's own
            // payment pays for the year.
            var invoice = await calls.RunAsync(c => new InvoiceService(stripe).GetAsync(m.PaymentId, cancellationToken: c), ct);
            var live = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(subscriptionId, cancellationToken: c), ct);
            if (InvoiceLines.PlanPeriod(invoice) is not { } paid || live.PlanItemOrNull() is not { } planItem
                || paid.End <= planItem.CurrentPeriodStart || (paid.Start < planItem.CurrentPeriodStart && paid.End < planItem.CurrentPeriodEnd))
            {
                await SubscriptionStore.RecordAsync(connection, tx, m.UserId, subscriptionId, "refunded",
                    $"payment {m.PaymentId} refunded in full ({m.AmountRefunded} {m.Currency}); it did not pay for the current period, so access stays",
                    "stripe", m.StripeEventId, m.OccurredAt, ct);
                return;
            }
            await CancelNowAsync(subscriptionId, $"billing-refund-cancel-{m.ChargeId}", ct);
            await SubscriptionStore.RecordAsync(connection, tx, m.UserId, subscriptionId, "refunded",
                $"payment {m.PaymentId} refunded in full ({m.AmountRefunded} {m.Currency}); subscription cancelled now", "stripe", m.StripeEventId, m.OccurredAt, ct);
        });
    }
}
