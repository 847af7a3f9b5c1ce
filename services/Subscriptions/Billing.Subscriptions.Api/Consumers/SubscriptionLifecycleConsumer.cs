using Billing.Catalog;
using Billing.Contracts;
using Billing.ServiceDefaults.Messaging;
using Billing.Subscriptions.Api.Persistence;
using Billing.Subscriptions.Core.Subscriptions;
using MassTransit;
using Npgsql;

namespace Billing.Subscriptions.Api.Consumers;

/// <summary>
/// Keeps the subscriptions table equal to Stripe's object as Payments last read it. Each message is applied once
/// (inbox) and only when its per-subscription sequence is newer than what is stored, so no redelivery or reordering
/// can roll a subscription back. Payment failures start the grace period; a payment ends it.
/// </summary>
public sealed class SubscriptionLifecycleConsumer(Inbox inbox, BillingCatalog catalog)
    : IConsumer<SubscriptionActivated>, IConsumer<SubscriptionUpdated>, IConsumer<SubscriptionEnded>,
      IConsumer<InvoicePaymentFailed>, IConsumer<InvoicePaid>
{
    public Task Consume(ConsumeContext<SubscriptionActivated> context)
    {
        var m = context.Message;
        return inbox.HandleOnceAsync(context, GetType(), (c, tx, ct) => ApplyAsync(c, tx, new SubscriptionRecord
        {
            SubscriptionId = m.SubscriptionId, UserId = m.UserId, CustomerId = m.CustomerId, PlanId = m.PlanId, PriceId = m.PriceId,
            Interval = m.Interval, IntervalCount = m.IntervalCount, StripeStatus = m.Status, CurrentPeriodStart = m.CurrentPeriodStart,
            CurrentPeriodEnd = m.CurrentPeriodEnd, CancelAtPeriodEnd = m.CancelAtPeriodEnd, TrialEnd = m.TrialEnd, StartedAt = m.StartedAt, Sequence = m.Sequence,
        }.WithScheduledChange(m.ScheduledChange), "activated", $"{m.PlanId} {m.Interval}×{m.IntervalCount}, {m.Status}", m.StripeEventId, m.OccurredAt, ct));
    }

    public Task Consume(ConsumeContext<SubscriptionUpdated> context)
    {
        var m = context.Message;
        return inbox.HandleOnceAsync(context, GetType(), (c, tx, ct) => ApplyAsync(c, tx, new SubscriptionRecord
        {
            SubscriptionId = m.SubscriptionId, UserId = m.UserId, CustomerId = m.CustomerId, PlanId = m.PlanId, PriceId = m.PriceId,
            Interval = m.Interval, IntervalCount = m.IntervalCount, StripeStatus = m.Status, CurrentPeriodStart = m.CurrentPeriodStart,
            CurrentPeriodEnd = m.CurrentPeriodEnd, CancelAtPeriodEnd = m.CancelAtPeriodEnd, TrialEnd = m.TrialEnd, StartedAt = m.StartedAt,
            Sequence = m.Sequence,
        }.WithScheduledChange(m.ScheduledChange), "updated", Describe(m), m.StripeEventId, m.OccurredAt, ct));
    }

    public Task Consume(ConsumeContext<SubscriptionEnded> context)
    {
        var m = context.Message;
        return inbox.HandleOnceAsync(context, GetType(), async (c, tx, ct) =>
        {
            var existing = await SubscriptionStore.GetForUpdateAsync(c, tx, m.SubscriptionId, ct);
            var ended = (existing ?? new SubscriptionRecord
            {
                SubscriptionId = m.SubscriptionId, UserId = m.UserId, CustomerId = "", PlanId = m.PlanId, PriceId = "", Interval = "month",
                IntervalCount = 1, StripeStatus = m.Status, CurrentPeriodStart = m.EndedAt, CurrentPeriodEnd = m.EndedAt,
                CancelAtPeriodEnd = false, StartedAt = m.EndedAt, Sequence = 0,
            }) with { StripeStatus = m.Status, EndedAt = m.EndedAt, EndedReason = m.Reason, Sequence = m.Sequence };
            await ApplyAsync(c, tx, ended, "ended", $"{m.Status} ({m.Reason ?? "no reason given"})", m.StripeEventId, m.OccurredAt, ct, existing);
        });
    }

    public Task Consume(ConsumeContext<InvoicePaymentFailed> context)
    {
        var m = context.Message;
        if (m.SubscriptionId is null)
        {
            return Task.CompletedTask;
        }
        return inbox.HandleOnceAsync(context, GetType(), async (c, tx, ct) =>
        {
            var existing = await SubscriptionStore.GetForUpdateAsync(c, tx, m.SubscriptionId, ct);
            if (existing is null || SubscriptionStatus.Over.Contains(existing.StripeStatus))
            {
                return;
            }
            if (!PaymentProblem.Contains(existing.StripeStatus))
            {
                // Only a subscription Stripe has put past due has a grace period. A failure reported late (the subscription is
                // active again) or early (its past_due update is still on its way and will start the grace) is only audited.
                await SubscriptionStore.RecordAsync(c, tx, m.UserId, m.SubscriptionId, "payment_failed",
                    $"attempt {m.AttemptCount} failed while {existing.StripeStatus}; no grace period started", "stripe", m.StripeEventId, m.OccurredAt, ct);
                return;
            }
            var since = existing.PastDueSince ?? m.OccurredAt;
            var updated = existing with
            {
                PastDueSince = since, PastDueSequence = existing.PastDueSequence ?? existing.Sequence,
                GraceUntil = existing.GraceUntil ?? since.AddDays(catalog.GracePeriodDays),
            };
            await SubscriptionStore.UpsertAsync(c, tx, updated, ct);
            await SubscriptionStore.RecordAsync(c, tx, m.UserId, m.SubscriptionId, "payment_failed",
                $"attempt {m.AttemptCount} failed; access until {updated.GraceUntil:u}", "stripe", m.StripeEventId, m.OccurredAt, ct);
        });
    }

    public Task Consume(ConsumeContext<InvoicePaid> context)
    {
        var m = context.Message;
        if (m.SubscriptionId is null)
        {
            return Task.CompletedTask;
        }
        return inbox.HandleOnceAsync(context, GetType(), async (c, tx, ct) =>
        {
            var existing = await SubscriptionStore.GetForUpdateAsync(c, tx, m.SubscriptionId, ct);
            if (existing is null)
            {
                return;
            }
            // Only the invoice of the current period (or of a renewal not seen yet) settles a past-due subscription: paying
            // an earlier period's leaves Stripe's status past due, and the grace period must run on. (Its period ends where
            // the current one starts; a minute's slack for stored times rounded to microseconds.)
            if (m.PeriodEnd <= existing.CurrentPeriodStart.AddMinutes(1))
            {
                await SubscriptionStore.RecordAsync(c, tx, m.UserId, m.SubscriptionId, "invoice_paid",
                    $"{m.BillingReason}: {m.AmountPaid} {m.Currency} for an earlier period", "stripe", m.StripeEventId, m.OccurredAt, ct);
                return;
            }
            var restored = existing.PastDueSince is not null || existing.SuspendedAt is not null;
            await SubscriptionStore.UpsertAsync(c, tx, existing with { PastDueSince = null, PastDueSequence = null, GraceUntil = null, SuspendedAt = null }, ct);
            await SubscriptionStore.RecordAsync(c, tx, m.UserId, m.SubscriptionId, restored ? "payment_recovered" : "invoice_paid",
                $"{m.BillingReason}: {m.AmountPaid} {m.Currency}", "stripe", m.StripeEventId, m.OccurredAt, ct);
        });
    }

    private async Task ApplyAsync(NpgsqlConnection c, NpgsqlTransaction tx, SubscriptionRecord incoming, string change, string detail,
        string? stripeEventId, DateTimeOffset occurredAt, CancellationToken ct, SubscriptionRecord? existing = null)
    {
        existing ??= await SubscriptionStore.GetForUpdateAsync(c, tx, incoming.SubscriptionId, ct);
        if (existing is not null && existing.Sequence >= incoming.Sequence)
        {
            return; // an older or repeated view of the subscription: what is stored is newer
        }

        var record = incoming with
        {
            EndedAt = incoming.EndedAt ?? existing?.EndedAt,
            EndedReason = incoming.EndedReason ?? existing?.EndedReason,
            PastDueSince = existing?.PastDueSince,
            PastDueSequence = existing?.PastDueSequence,
            GraceUntil = existing?.GraceUntil,
            SuspendedAt = existing?.SuspendedAt,
        };
        var enteringPastDue = existing is null || !PaymentProblem.Contains(existing.StripeStatus) || record.PastDueSince is null;
        if (incoming.StripeStatus is "past_due" or "unpaid" && enteringPastDue)
        {
            // A new spell of past due gets a full grace period, whatever an earlier one left behind.
            record = record with
            {
                PastDueSince = occurredAt, PastDueSequence = incoming.Sequence, GraceUntil = occurredAt.AddDays(catalog.GracePeriodDays),
            };
        }
        else if (incoming.StripeStatus is "active" or "trialing")
        {
            record = record with { PastDueSince = null, PastDueSequence = null, GraceUntil = null, SuspendedAt = null };
        }

        await SubscriptionStore.UpsertAsync(c, tx, record, ct);
        await SubscriptionStore.RecordAsync(c, tx, record.UserId, record.SubscriptionId, change, detail, "stripe", stripeEventId, occurredAt, ct);
    }

    /// <summary>Stripe statuses of a payment problem: the grace period runs while the subscription stays in them.</summary>
    private static readonly IReadOnlySet<string> PaymentProblem = new HashSet<string>(StringComparer.Ordinal) { "past_due", "unpaid", "paused" };

    private static string Describe(SubscriptionUpdated m)
    {
        var parts = new List<string> { $"{m.PlanId} {m.Interval}×{m.IntervalCount}", m.Status };
        if (m.PreviousPlanId is { } plan && plan != m.PlanId)
        {
            parts.Add($"plan was {plan}");
        }
        if (m.PreviousStatus is { } status && status != m.Status)
        {
            parts.Add($"status was {status}");
        }
        if (m.CancelAtPeriodEnd)
        {
            parts.Add($"cancels at {m.CurrentPeriodEnd:u}");
        }
        if (m.ScheduledChange is { } next)
        {
            parts.Add($"{next.PlanId} {next.Interval}×{next.IntervalCount} from {next.EffectiveAt:u}");
        }
        return string.Join(", ", parts);
    }
}
