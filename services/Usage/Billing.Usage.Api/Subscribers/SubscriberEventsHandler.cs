using Billing.Catalog;
using Billing.Contracts;
using Billing.ServiceDefaults.Messaging;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Core.Subscribers;

namespace Billing.Usage.Api.Subscribers;

/// <summary>
/// Applies subscription, suspension, invoice and wallet events to Usage's state. Each runs once per message through
/// the inbox, in one transaction with its effect.
/// </summary>
public sealed class SubscriberEventsHandler(Inbox inbox, SubscriberStore subscribers, TokenBalanceStore balances, BillingCatalog catalog,
    TimeProvider clock, ILogger<SubscriberEventsHandler> logger)
{
    public Task<bool> HandleAsync(Guid messageId, string consumer, SubscriptionChange change, CancellationToken cancellationToken) =>
        inbox.HandleOnceAsync(messageId, consumer, async (connection, transaction, ct) =>
        {
            var now = clock.GetUtcNow();
            if (change.CustomerId is { Length: > 0 } customerId)
            {
                // Even a stale event names the right customer.
                await subscribers.RememberCustomerAsync(connection, transaction, change.UserId, customerId, now, ct);
            }
            if (!await subscribers.AdvanceSequenceAsync(connection, transaction, change.SubscriptionId, change.UserId, change.Sequence, now, ct))
            {
                logger.LogInformation("Ignored {Subscription} sequence {Sequence}: not newer than the one applied", change.SubscriptionId, change.Sequence);
                return;
            }
            if (catalog.FindPlan(change.PlanId) is null)
            {
                logger.LogWarning("Subscription {Subscription} names plan {Plan}, which the catalog does not have; the free plan applies",
                    change.SubscriptionId, change.PlanId);
            }
            var state = await subscribers.LockAsync(connection, transaction, change.UserId, now, ct);
            var next = SubscriberTransitions.Apply(state, change, catalog);
            if (next != state)
            {
                await subscribers.SaveAsync(connection, transaction, next, now, ct);
                if (next.Access != SubscriberAccess.Suspended && next.EffectivePlan(catalog).Id != state.EffectivePlan(catalog).Id)
                {
                    await AnnounceWhatTheNewLimitsFindAsync(connection, transaction, next, now, ct);
                }
            }
        }, cancellationToken);

    /// <summary>
    /// After a plan change within a window, QuotaLow and QuotaExhausted of the new limits that the window's usage has already
    /// reached (a downgrade to a limit already used up): no spend will cross them, so they are recorded now, once per window
    /// and limit like every announcement, and the announcer publishes them.
    /// </summary>
    private async Task AnnounceWhatTheNewLimitsFindAsync(Npgsql.NpgsqlConnection connection, Npgsql.NpgsqlTransaction transaction,
        SubscriberState state, DateTimeOffset now, CancellationToken ct)
    {
        if (catalog.IsUnlimited(state.Groups))
        {
            return;
        }
        foreach (var (allowance, window) in Core.Meters.MeterUsages.Windows(catalog, state, now))
        {
            if (allowance.Limit is not { } limit || limit <= 0)
            {
                continue;
            }
            var used = await subscribers.UsedAsync(connection, transaction, state.UserId, allowance.Meter, window.Start, ct);
            if (used > 0)
            {
                await Spending.QuotaAnnouncements.RecordAsync(connection, transaction, state.UserId, allowance.Meter, window.Start, window.End, limit,
                    before: 0, after: used, now);
            }
        }
    }

    public Task<bool> HandleAsync(Guid messageId, string consumer, SubscriptionAccessSuspended e, CancellationToken cancellationToken) =>
        inbox.HandleOnceAsync(messageId, consumer, async (connection, transaction, ct) =>
        {
            var now = clock.GetUtcNow();
            var state = await subscribers.LockAsync(connection, transaction, e.UserId, now, ct);
            var next = SubscriberTransitions.Suspend(state, e.SubscriptionId, e.PastDueSince, e.PastDueSequence);
            if (next != state)
            {
                await subscribers.SaveAsync(connection, transaction, next, now, ct);
            }
        }, cancellationToken);

    public Task<bool> HandleAsync(Guid messageId, string consumer, InvoicePaid e, CancellationToken cancellationToken) =>
        inbox.HandleOnceAsync(messageId, consumer, async (connection, transaction, ct) =>
        {
            if (e.SubscriptionId is null)
            {
                return;
            }
            var now = clock.GetUtcNow();
            var state = await subscribers.LockAsync(connection, transaction, e.UserId, now, ct);
            var next = SubscriberTransitions.Renew(state, e.SubscriptionId, e.PeriodStart, e.PeriodEnd, e.OccurredAt, e.BillingReason, e.AmountPaid);
            if (next != state)
            {
                await subscribers.SaveAsync(connection, transaction, next, now, ct);
            }
        }, cancellationToken);

    public Task<bool> HandleBalanceAsync(Guid messageId, string consumer, string userId, long balanceAfter, DateTimeOffset occurredAt,
        CancellationToken cancellationToken) =>
        inbox.HandleOnceAsync(messageId, consumer,
            (connection, transaction, ct) => balances.ApplyAsync(connection, transaction, userId, balanceAfter, occurredAt, ct), cancellationToken);
}
