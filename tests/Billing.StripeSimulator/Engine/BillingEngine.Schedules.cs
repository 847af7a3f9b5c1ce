using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Engine;

/// <summary>
/// Subscription schedules: created from a subscription, their phases replaced, released or canceled; a phase that ends
/// when the subscription renews changes over as part of that renewal (<see cref="EndPeriod"/>), one that ends at any
/// other moment on its own (<see cref="EndSchedulePhase"/>).
/// </summary>
public sealed partial class BillingEngine
{
    /// <summary>The schedule managing <paramref name="sub"/>, if one is attached and still running.</summary>
    public SubscriptionSchedule? ScheduleOf(Subscription sub) =>
        sub.ScheduleId is { } id && state.SubscriptionSchedules.TryGetValue(id, out var schedule) && schedule.IsLive ? schedule : null;

    /// <summary>Stripe refuses cancelation changes on a subscription a schedule manages.</summary>
    public void RefuseCancelationChange(Subscription sub)
    {
        if (ScheduleOf(sub) is { } schedule)
        {
            throw StripeError.Invalid(null,
                $"The subscription is managed by the subscription schedule `{schedule.Id}`, and updating any cancelation behavior directly is not allowed. Please update the schedule instead.",
                null);
        }
    }

    /// <summary><c>POST /v1/subscription_schedules</c> with <c>from_subscription</c>: one phase, the subscription's current
    /// items over its current period; <c>end_behavior</c> <c>release</c> (<c>cancel</c> when the subscription was set to cancel).</summary>
    public SubscriptionSchedule CreateScheduleFromSubscription(Subscription sub, Dictionary<string, string>? metadata)
    {
        if (sub.ScheduleId is { } existing && !sub.IsEnded)
        {
            throw StripeError.Invalid("from_subscription", $"You cannot migrate a subscription that is already attached to a schedule: `{existing}`.");
        }
        if (sub.IsEnded || sub.Status is "incomplete")
        {
            throw StripeError.Invalid("from_subscription", $"You cannot migrate a subscription that is currently in the `{sub.Status}` status.");
        }
        var previous = json.Subscription(sub);
        var canceling = sub.CancelAtPeriodEnd || sub.CancelAt is not null;
        var schedule = new SubscriptionSchedule
        {
            Id = state.NewId("sub_sched_"),
            Created = state.Now,
            CustomerId = sub.CustomerId,
            SubscriptionId = sub.Id,
            Status = "active",
            EndBehavior = canceling ? "cancel" : "release",
            Metadata = metadata ?? new(),
            Phases =
            [
                new SchedulePhase
                {
                    StartDate = sub.Item.PeriodStart,
                    EndDate = sub.Item.PeriodEnd,
                    Items = [.. sub.Items.Select(i => new SchedulePhaseItem { PriceId = i.PriceId, Quantity = i.Quantity, Metadata = new(i.Metadata) })],
                    TrialEnd = sub.Status == "trialing" ? sub.TrialEnd : null,
                },
            ],
        };
        state.SubscriptionSchedules[schedule.Id] = schedule;
        sub.ScheduleId = schedule.Id;
        // From now on the schedule owns the cancellation: end_behavior=cancel, with cancel_at at its end.
        sub.CancelAtPeriodEnd = false;
        SyncCancelAt(schedule, sub);
        state.Emit("subscription_schedule.created", json.SubscriptionSchedule(schedule));
        EmitSubscriptionUpdated(sub, previous);
        return schedule;
    }

    /// <summary>Replaces the current and future phases (<paramref name="fromCurrent"/> starts with the current one); when the
    /// current phase's items change, the subscription changes now like <c>POST /v1/subscriptions/{id}</c> would.</summary>
    public void ReplacePhases(SubscriptionSchedule schedule, Subscription sub, List<SchedulePhase> fromCurrent, string prorationBehavior)
    {
        var updates = UpdatesToward(sub, fromCurrent[0].Items);
        if (updates.Count > 0)
        {
            ChangeItems(sub, updates, prorationBehavior, null, "allow_incomplete", null);
        }
        schedule.Phases = [.. schedule.Phases.Take(schedule.CurrentPhaseIndex), .. fromCurrent];
    }

    /// <summary>A schedule that ends by canceling puts its end into the subscription's <c>cancel_at</c>; one that releases does not.</summary>
    public static void SyncCancelAt(SubscriptionSchedule schedule, Subscription sub)
    {
        if (schedule.EndBehavior == "cancel")
        {
            sub.CancelAt = schedule.Phases[^1].EndDate;
        }
        else if (sub.CancelAt is not null)
        {
            sub.CancelAt = null;
            sub.CanceledAt = null;
            sub.CancellationReason = null;
        }
    }

    /// <summary>After a direct change of a scheduled subscription's items, the current phase follows (as in Stripe).</summary>
    public void SyncCurrentPhase(Subscription sub)
    {
        if (ScheduleOf(sub) is not { } schedule)
        {
            return;
        }
        var current = schedule.CurrentPhase;
        if (current.Items.Count == sub.Items.Count && current.Items.Zip(sub.Items).All(p => p.First.PriceId == p.Second.PriceId && p.First.Quantity == p.Second.Quantity))
        {
            return;
        }
        var before = json.SubscriptionSchedule(schedule);
        schedule.Phases[schedule.CurrentPhaseIndex] = new SchedulePhase
        {
            StartDate = current.StartDate,
            EndDate = current.EndDate,
            Items = [.. sub.Items.Select(i => new SchedulePhaseItem { PriceId = i.PriceId, Quantity = i.Quantity, Metadata = new(i.Metadata) })],
            Metadata = current.Metadata,
            ProrationBehavior = current.ProrationBehavior,
            BillingCycleAnchor = current.BillingCycleAnchor,
            TrialEnd = current.TrialEnd,
        };
        var after = json.SubscriptionSchedule(schedule);
        state.Emit("subscription_schedule.updated", after, Diff(before, after));
    }

    /// <summary><c>POST /v1/subscription_schedules/{id}/release</c>, or the end of the last phase with <c>end_behavior=release</c>:
    /// the subscription stays as it is, without its schedule.</summary>
    public void ReleaseSchedule(SubscriptionSchedule schedule, bool preserveCancelDate, bool emitSubscriptionUpdate = true)
    {
        if (!schedule.IsLive)
        {
            throw StripeError.Invalid(null, $"You cannot release a subscription schedule that is currently in the `{schedule.Status}` status.");
        }
        var sub = schedule.SubscriptionId is { } subId ? state.Subscriptions[subId] : null;
        var previous = sub is null ? null : json.Subscription(sub);
        schedule.Status = "released";
        schedule.ReleasedAt = state.Now;
        schedule.ReleasedSubscriptionId = schedule.SubscriptionId;
        schedule.SubscriptionId = null;
        if (sub is not null)
        {
            sub.ScheduleId = null;
            if (!preserveCancelDate && sub.CancelAt is not null)
            {
                sub.CancelAt = null;
                sub.CanceledAt = null;
                sub.CancellationReason = null;
            }
        }
        state.Emit("subscription_schedule.released", json.SubscriptionSchedule(schedule));
        if (sub is not null && emitSubscriptionUpdate)
        {
            EmitSubscriptionUpdated(sub, previous!);
        }
    }

    /// <summary><c>POST /v1/subscription_schedules/{id}/cancel</c>: the schedule and its subscription end now (with
    /// <paramref name="invoiceNow"/>, Stripe's default, a final invoice bills the metered usage not billed yet, if any).</summary>
    public void CancelSchedule(SubscriptionSchedule schedule, bool invoiceNow)
    {
        if (!schedule.IsLive)
        {
            throw StripeError.Invalid(null,
                $"You cannot cancel a subscription schedule that is currently in the `{schedule.Status}` status. It must be in `not_started, active` status to be canceled.");
        }
        if (schedule.SubscriptionId is { } subId && state.Subscriptions[subId] is { IsEnded: false } sub)
        {
            CancelNow(sub, invoiceNow); // ends the subscription, which cancels the schedule (EndSubscription)
            return;
        }
        schedule.Status = "canceled";
        schedule.CanceledAt = state.Now;
        state.Emit("subscription_schedule.canceled", json.SubscriptionSchedule(schedule));
    }

    /// <summary>The last phase of a schedule with <c>end_behavior=cancel</c> ends: the subscription is canceled, the schedule completed.</summary>
    private void CompleteSchedule(SubscriptionSchedule schedule, Subscription sub, JsonObject previous)
    {
        schedule.Status = "completed";
        schedule.CompletedAt = state.Now;
        BillFinalUsage(sub, "subscription_cycle");
        EndSubscription(sub, sub.CancellationReason ?? "cancellation_requested", previous);
        state.Emit("subscription_schedule.completed", json.SubscriptionSchedule(schedule));
    }

    /// <summary>The subscription takes on <paramref name="phase"/> at <paramref name="at"/> (its start, a renewal that has
    /// billed the ended period's usage): the phase's items (metered items whose price stays keep counting, new ones count
    /// from <paramref name="at"/>), its metadata merged into the subscription's (an empty value unsets a key). A new
    /// interval, or <c>billing_cycle_anchor=phase_start</c>, counts periods from the phase start.</summary>
    private void EnterPhase(Subscription sub, SchedulePhase phase, long at)
    {
        var oldPrice = state.Prices[sub.Item.PriceId];
        ApplyItemUpdates(sub, UpdatesToward(sub, phase.Items), at);
        MergeItemMetadata(sub, phase.Items);
        MergeMetadata(sub.Metadata, phase.Metadata);
        var newPrice = state.Prices[sub.Item.PriceId];
        if (phase.BillingCycleAnchor == "phase_start" || !SameInterval(oldPrice, newPrice))
        {
            sub.BillingCycleAnchor = at;
        }
    }

    /// <summary>A phase ends at a moment that is not a renewal of its subscription: the next phase's items apply now with
    /// that phase's proration behaviour (as a plan change would), or, after the last phase, the schedule releases or cancels.</summary>
    private void EndSchedulePhase(SubscriptionSchedule schedule)
    {
        var sub = state.Subscriptions[schedule.SubscriptionId!];
        var previous = json.Subscription(sub);
        if (schedule.CurrentPhaseIndex + 1 >= schedule.Phases.Count)
        {
            if (schedule.EndBehavior == "cancel")
            {
                CompleteSchedule(schedule, sub, previous);
            }
            else
            {
                ReleaseSchedule(schedule, preserveCancelDate: false);
            }
            return;
        }
        var scheduleBefore = json.SubscriptionSchedule(schedule);
        var next = schedule.Phases[schedule.CurrentPhaseIndex + 1];
        var updates = UpdatesToward(sub, next.Items);
        var resetAnchor = next.BillingCycleAnchor == "phase_start";
        if (updates.Count > 0 || resetAnchor)
        {
            ChangeItems(sub, updates, next.ProrationBehavior, resetAnchor ? "now" : null, "allow_incomplete", null);
        }
        MergeItemMetadata(sub, next.Items);
        MergeMetadata(sub.Metadata, next.Metadata);
        schedule.CurrentPhaseIndex++;
        EmitSubscriptionUpdated(sub, previous);
        var scheduleAfter = json.SubscriptionSchedule(schedule);
        state.Emit("subscription_schedule.updated", scheduleAfter, Diff(scheduleBefore, scheduleAfter));
    }

    /// <summary>Each phase item's metadata merged into the subscription item with its price.</summary>
    private static void MergeItemMetadata(Subscription sub, IEnumerable<SchedulePhaseItem> wanted)
    {
        foreach (var phaseItem in wanted)
        {
            if (sub.Items.FirstOrDefault(i => i.PriceId == phaseItem.PriceId) is { } item)
            {
                MergeMetadata(item.Metadata, phaseItem.Metadata);
            }
        }
    }

    private static void MergeMetadata(Dictionary<string, string> target, Dictionary<string, string> changes)
    {
        foreach (var (key, value) in changes)
        {
            if (value.Length == 0)
            {
                target.Remove(key);
            }
            else
            {
                target[key] = value;
            }
        }
    }

    private void EmitSubscriptionUpdated(Subscription sub, JsonObject previous)
    {
        var after = json.Subscription(sub);
        var diff = Diff(previous, after);
        if (diff.Count > 0)
        {
            state.Emit("customer.subscription.updated", after, diff);
        }
    }
}
