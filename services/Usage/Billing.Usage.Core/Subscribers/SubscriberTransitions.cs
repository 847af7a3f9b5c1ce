using Billing.Catalog;

namespace Billing.Usage.Core.Subscribers;

/// <summary>
/// How events move a subscriber's state. Pure, and written so that no permutation or duplication of a lifecycle's
/// events leaves a different state: subscription events apply only above the stored <c>Sequence</c>, a suspension
/// is compared by time with the status it suspends, an older event of another subscription never replaces a live one,
/// and a renewal only ever moves the period forward.
/// </summary>
public static class SubscriberTransitions
{
    /// <summary>Applies a subscription event; returns the state unchanged when it is stale or about another, dead subscription.</summary>
    public static SubscriberState Apply(SubscriberState state, SubscriptionChange change, BillingCatalog catalog)
    {
        var same = string.Equals(state.SubscriptionId, change.SubscriptionId, StringComparison.Ordinal);
        if (same && change.Sequence <= state.Sequence)
        {
            return state; // redelivered or overtaken: never roll back
        }
        if (!same && change.RevokesAccess)
        {
            // The end of a subscription that is not (or no longer) the user's current one changes nothing.
            return state;
        }
        if (!same && state.Access != SubscriberAccess.None && OlderThanTheLiveOne(state, change))
        {
            // Another subscription that started before the live one (two live for a while: the old one's cancellation at
            // its period end was set after the new one was bought), or, when the starts do not tell, a late event older
            // than what made the current one live (queues drain in parallel after a restart): it must not replace the
            // subscription the user has now.
            return state;
        }

        if (change.RevokesAccess)
        {
            return state with
            {
                PlanId = catalog.FreePlan,
                Status = change.Status,
                Access = SubscriberAccess.None,
                Sequence = change.Sequence,
                StatusOccurredAt = change.OccurredAt,
                SuspendedAt = null,
                SuspendedSequence = null,
                RecoveredSequence = null,
                PaidAt = null,
            };
        }

        // Episodes that began before this change are over when it says active, or that the subscription was active just
        // before it (its previous status in Payments' chain of updates, whose sequences only grow).
        var recoveredSequence = Recovered(change.Status) || Recovered(change.PreviousStatus)
            ? Max(same ? state.RecoveredSequence : null, change.Sequence)
            : same ? state.RecoveredSequence : null;
        var suspendedAt = !same ? null
            : state.SuspendedSequence is { } began ? (began < recoveredSequence ? null : state.SuspendedAt)
            // A suspension that did not name its episode's sequence (an older Subscriptions): by Stripe's times.
            : Recovered(change.Status) && state.SuspendedAt < change.OccurredAt ? null : LiveSuspension(state);

        var next = state with
        {
            PlanId = change.PlanId,
            SubscriptionId = change.SubscriptionId,
            Status = change.Status,
            Anchor = change.StartedAt ?? (same ? state.Anchor : change.PeriodStart),
            // Within one subscription the period only moves forward: a renewal (InvoicePaid) may have been seen first.
            PeriodStart = same && Older(change.PeriodStart, change.PeriodEnd, state) ? state.PeriodStart : change.PeriodStart ?? (same ? state.PeriodStart : null),
            PeriodEnd = same && Older(change.PeriodStart, change.PeriodEnd, state) ? state.PeriodEnd : change.PeriodEnd ?? (same ? state.PeriodEnd : null),
            Sequence = change.Sequence,
            StatusOccurredAt = change.OccurredAt,
            // Another subscription starts clean; the end of the suspended episode lifts it (a return to active, or a later
            // episode's past_due that says it was active until then — also when it overtook the payment's own event,
            // which its higher sequence then makes too old to apply).
            SuspendedAt = suspendedAt,
            SuspendedSequence = suspendedAt is null ? null : state.SuspendedSequence,
            RecoveredSequence = recoveredSequence,
            PaidAt = same ? state.PaidAt : null,
        };
        return next with { Access = AccessOf(next) };
    }

    /// <summary>
    /// Past due beyond grace (SubscriptionAccessSuspended): applies to the current subscription only, and only while the
    /// past-due episode it is about — begun by the update of sequence <paramref name="pastDueSequence"/>, at
    /// <paramref name="pastDueSince"/> (Stripe's time) — is not over: not after an applied update of a higher sequence
    /// that says (or follows) active, nor after the current period's invoice was paid. Without the sequence (an older
    /// Subscriptions), a status active since after <paramref name="pastDueSince"/> ends it. (The suspension's own time
    /// is Billing's clock, not comparable with Stripe's.)
    /// </summary>
    public static SubscriberState Suspend(SubscriberState state, string subscriptionId, DateTimeOffset pastDueSince, long? pastDueSequence = null)
    {
        if (!string.Equals(state.SubscriptionId, subscriptionId, StringComparison.Ordinal) || state.Access == SubscriberAccess.None)
        {
            return state; // not this subscription
        }
        var over = pastDueSequence is { } began
            ? state.RecoveredSequence > began
            : Recovered(state.Status) && state.StatusOccurredAt > pastDueSince;
        if (over || state.PaidAt > pastDueSince)
        {
            // The episode it suspends has already ended in a payment: kept, it would suspend the next past-due episode
            // from its first second.
            return state;
        }
        var next = state with
        {
            SuspendedAt = state.SuspendedAt is { } s && s > pastDueSince ? s : pastDueSince,
            SuspendedSequence = Max(state.SuspendedSequence, pastDueSequence),
        };
        return next with { Access = AccessOf(next) };
    }

    /// <summary>
    /// A paid invoice of the current subscription: a later period moves the period (period windows reset), and paying the
    /// current period's invoice (or a later one's) at <paramref name="paidAt"/> ends a past-due episode that began before
    /// then — whatever time the update that says <c>active</c> carries (Payments stamps an update with the time of the
    /// Stripe event that made it re-read the subscription, which can be the moment the renewal failed).
    /// </summary>
    public static SubscriberState Renew(SubscriberState state, string? subscriptionId, DateTimeOffset periodStart, DateTimeOffset periodEnd,
        DateTimeOffset paidAt, string? billingReason = null, long? amountPaid = null)
    {
        if (subscriptionId is null || !string.Equals(state.SubscriptionId, subscriptionId, StringComparison.Ordinal) || periodEnd <= periodStart)
        {
            return state;
        }
        // A $0 invoice of a change during a trial pays for no new period: a shortened trial's runs from the change to the
        // new trial end, while the trial's period still starts where it started (the subscription's update says so).
        var trialChange = state.Status == "trialing" && billingReason == "subscription_update" && amountPaid == 0;
        var next = trialChange || (state.PeriodEnd is { } end && periodEnd <= end && (periodEnd == end || !(periodStart > state.PeriodStart)))
            ? state // an earlier period's invoice, or a proration within the current period (it ends where the period ends)
            : state with { PeriodStart = periodStart, PeriodEnd = periodEnd };
        // An earlier period's invoice ends where the current period starts (a minute's slack for stored times), and paying
        // it leaves the subscription past due, as Subscriptions reads it too.
        if (state.PeriodStart is { } start && periodEnd <= start.AddMinutes(1))
        {
            return next;
        }
        var paid = Max(state.PaidAt, paidAt);
        var lifted = state.SuspendedAt < paid;
        next = next with
        {
            PaidAt = paid,
            SuspendedAt = lifted ? null : state.SuspendedAt,
            SuspendedSequence = lifted ? null : state.SuspendedSequence,
        };
        return next with { Access = AccessOf(next) };
    }

    /// <summary>The subscription that started later is the user's; at the same start, the later event.</summary>
    private static bool OlderThanTheLiveOne(SubscriberState state, SubscriptionChange change) =>
        change.StartedAt is { } started && state.Anchor is { } anchor && started != anchor
            ? started < anchor
            : change.OccurredAt < state.StatusOccurredAt;

    private static bool Recovered(string? status) => status is "active" or "trialing";

    private static DateTimeOffset? Max(DateTimeOffset? a, DateTimeOffset? b) => a is null ? b : b is null ? a : a > b ? a : b;

    private static long? Max(long? a, long? b) => a is null ? b : b is null ? a : Math.Max(a.Value, b.Value);

    /// <summary>The stored suspension unless an active status after it has lifted it (a state stored before the
    /// suspension's late arrival was ignored carries such a stale one).</summary>
    private static DateTimeOffset? LiveSuspension(SubscriberState s) =>
        s.SuspendedAt is { } at && Recovered(s.Status) && s.StatusOccurredAt > at ? null : s.SuspendedAt;

    /// <summary>
    /// The period [<paramref name="start"/>, <paramref name="end"/>) is older than the stored one: it ends earlier and
    /// starts earlier. One that ends earlier but starts later is newer — a change of billing interval resets the billing
    /// cycle (a yearly plan changed to a monthly one mid-year: the new period starts now and ends in a month) — and one
    /// that starts at the same moment is the same period, ending where the newer change says: a trial shortened by an
    /// upgrade to a plan with a shorter trial.
    /// </summary>
    private static bool Older(DateTimeOffset? start, DateTimeOffset? end, SubscriberState stored) =>
        stored.PeriodEnd is { } storedEnd && end is { } e && storedEnd > e && !(start >= stored.PeriodStart);

    private static SubscriberAccess AccessOf(SubscriberState s)
    {
        if (!SubscriptionChange.GrantsAccess(s.Status))
        {
            return SubscriberAccess.None;
        }
        // past_due never lifts a suspension; active/trialing lifts one that is older than itself.
        var suspended = s.SuspendedAt is { } at && (s.Status == "past_due" || s.StatusOccurredAt is null || at >= s.StatusOccurredAt);
        return suspended ? SubscriberAccess.Suspended : SubscriberAccess.Full;
    }
}
