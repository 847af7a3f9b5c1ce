using Billing.ServiceDefaults.Stripe;
using Stripe;

namespace Billing.Subscriptions.Api.Stripe;

/// <summary>
/// The prices a subscription schedule moves the subscription to when its current period ends: the plan's price and the
/// metered overage prices that go with it.
/// </summary>
public sealed record PendingDowngrade(string PriceId, IReadOnlyList<string> OveragePriceIds, string? PlanId);

/// <summary>
/// Downgrades that change the billing interval (e.g. Pro yearly → Pro monthly) or the metered overage items. Stripe starts
/// a new period and charges it at once when a subscription's price changes its interval, whatever
/// <c>billing_cycle_anchor</c> says, and removing a metered price at once without proration drops the overage it has
/// counted so far; so such a downgrade is a Stripe subscription schedule instead: phase 1 is the current items until the
/// period end, phase 2 the new price (and its metered prices) from then, and the schedule releases the subscription after
/// it; the renewal at the phase change bills the ended period's overage on the old metered prices. Stripe makes the change at the renewal itself (its
/// events then reach Billing like any renewal's). Releasing the schedule undoes the change; any other change of the
/// subscription (cancel, upgrade, another downgrade) releases it first, because Stripe refuses cancellation changes on a
/// subscription a schedule manages and would otherwise apply the old downgrade at the period end — and if that change
/// then fails, the downgrade is scheduled again (<see cref="RescheduleAsync"/>).
/// </summary>
public static class ScheduledDowngrades
{
    /// <summary>The schedule that manages <paramref name="subscription"/>, if it is still in force.</summary>
    public static async Task<SubscriptionSchedule?> ActiveAsync(Subscription subscription, IStripeClient stripe, StripeCalls calls,
        CancellationToken ct)
    {
        if (string.IsNullOrEmpty(subscription.ScheduleId))
        {
            return null;
        }
        var schedule = await calls.RunAsync(c => new SubscriptionScheduleService(stripe).GetAsync(subscription.ScheduleId, cancellationToken: c), ct);
        return SubscriptionSchedules.InForce(schedule) ? schedule : null;
    }

    /// <summary>
    /// What <paramref name="schedule"/> moves the subscription to when its current period ends, or null when it changes
    /// nothing then (no schedule, or one whose last change has already happened).
    /// </summary>
    public static PendingDowngrade? Pending(SubscriptionSchedule? schedule, Subscription subscription)
    {
        // Billing writes the plan's price first in a phase, the metered ones after it.
        return schedule is not null && SubscriptionSchedules.NextChange(schedule, subscription.PlanItem()) is { } next
            ? new PendingDowngrade(next.Items[0].PriceId, next.Items.Skip(1).Select(i => i.PriceId).ToList(), next.Metadata?.GetValueOrDefault("planId"))
            : null;
    }

    /// <summary>True when the schedule ends the subscription instead of releasing it (set up in the Dashboard, say).</summary>
    public static bool EndsSubscription(SubscriptionSchedule? schedule) => schedule?.EndBehavior == "cancel";

    /// <summary>Schedules the move to <paramref name="change"/> at the current period's end (replacing a change already scheduled).</summary>
    public static async Task ScheduleAsync(Subscription subscription, SubscriptionSchedule? existing, PendingDowngrade change,
        string idempotencyKey, IStripeClient stripe, StripeCalls calls, RetiredPrices retired, CancellationToken ct, bool agreed = false)
    {
        var service = new SubscriptionScheduleService(stripe);
        var schedule = existing ?? await calls.RunAsync(c => service.CreateAsync(
            new SubscriptionScheduleCreateOptions { FromSubscription = subscription.Id },
            new RequestOptions { IdempotencyKey = idempotencyKey + "-create" }, c), ct);
        var item = subscription.PlanItem();
        // The phase in force keeps its start (Stripe refuses to move it), what it had (Stripe replaces every setting that is
        // not sent again: the trial would end now, a discount would go) and ends with the period the user has paid for.
        var current = schedule.Phases?.Where(p => p.StartDate <= item.CurrentPeriodStart).OrderBy(p => p.StartDate).LastOrDefault();
        var currentStart = schedule.CurrentPhase?.StartDate ?? current?.StartDate ?? item.CurrentPeriodStart;
        var discounts = current?.Discounts?.Select(d => new SubscriptionSchedulePhaseDiscountOptions
        {
            Discount = d.DiscountId, Coupon = d.DiscountId is null ? d.CouponId : null, PromotionCode = d.DiscountId is null ? d.PromotionCodeId : null,
        }).ToList();
        var paid = new SubscriptionSchedulePhaseOptions
        {
            // Every item as it is: the plan's price (first) and its metered overage items, whose usage the renewal then bills.
            Items = [new SubscriptionSchedulePhaseItemOptions { Price = item.Price.Id, Quantity = item.Quantity },
                ..subscription.MeteredItems().Select(m => new SubscriptionSchedulePhaseItemOptions { Price = m.Price.Id })],
            StartDate = currentStart,
            EndDate = item.CurrentPeriodEnd,
            Discounts = discounts is { Count: > 0 } ? discounts : null,
            ProrationBehavior = "none",
        };
        if ((current?.TrialEnd ?? (subscription.Status == "trialing" ? subscription.TrialEnd : null)) is { } trialEnd)
        {
            paid.TrialEnd = trialEnd;
        }
        var next = new SubscriptionSchedulePhaseOptions
        {
            // No end: one billing period of the new price, after which the schedule releases the subscription. The new
            // interval's periods count from the phase start (Stripe is told so, not left to infer it).
            Items = [new SubscriptionSchedulePhaseItemOptions { Price = change.PriceId, Quantity = 1 },
                ..change.OveragePriceIds.Select(id => new SubscriptionSchedulePhaseItemOptions { Price = id })],
            BillingCycleAnchor = "phase_start",
            Metadata = change.PlanId is null ? null : new Dictionary<string, string> { ["planId"] = change.PlanId },
            Discounts = discounts is { Count: > 0 } ? discounts : null,
            ProrationBehavior = "none",
        };
        // The phase in force names the prices the user pays now: a grandfathered one the catalog has since archived too; and
        // a downgrade scheduled again (agreed before) names the prices Stripe's schedule had, which a push may have archived.
        await retired.RunAsync(paid.Items.Select(i => i.Price).Concat(agreed ? next.Items.Select(i => i.Price) : []), suffix => calls.RunAsync(c =>
            service.UpdateAsync(schedule.Id,
                new SubscriptionScheduleUpdateOptions { EndBehavior = "release", ProrationBehavior = "none", Phases = [paid, next] },
                new RequestOptions { IdempotencyKey = idempotencyKey + "-phases" + suffix }, c), ct));
    }

    /// <summary>Releases <paramref name="schedule"/>: the subscription stays on its current price and nothing is scheduled.</summary>
    public static Task ReleaseAsync(SubscriptionSchedule schedule, string idempotencyKey, IStripeClient stripe, StripeCalls calls,
        CancellationToken ct) =>
        calls.RunAsync(c => new SubscriptionScheduleService(stripe).ReleaseAsync(schedule.Id, new SubscriptionScheduleReleaseOptions(),
            new RequestOptions { IdempotencyKey = idempotencyKey + "-release" }, c), ct);

    /// <summary>
    /// Schedules <paramref name="pending"/> again after the change that released its schedule failed (the subscription is
    /// as it was): best effort — a failure here is logged, and the user's answer is the original failure.
    /// </summary>
    public static async Task RescheduleAsync(Subscription subscription, PendingDowngrade? pending, string idempotencyKey, IStripeClient stripe,
        StripeCalls calls, RetiredPrices retired, ILogger logger, CancellationToken ct)
    {
        if (pending is null)
        {
            return;
        }
        try
        {
            // Only if the failed change really changed nothing: a timeout may hide an upgrade Stripe did apply, and scheduling
            // the old downgrade on top of it would take the paid upgrade away at the renewal.
            var now = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(subscription.Id, cancellationToken: c), CancellationToken.None);
            var item = now.PlanItem();
            if (item.Price.Id != subscription.PlanItem().Price.Id || !string.IsNullOrEmpty(now.ScheduleId) || now.CancelAtPeriodEnd
                || now.CancelAt is not null || now.Status is "canceled" or "incomplete_expired")
            {
                logger.LogWarning("Subscription {Subscription} changed although the change failed (price {Price}, cancel at period end {Cancel}): "
                    + "the downgrade to {Pending} is not scheduled again", now.Id, item.Price.Id, now.CancelAtPeriodEnd, pending.PriceId);
                return;
            }
            await ScheduleAsync(now, null, pending, idempotencyKey + "-again", stripe, calls, retired, CancellationToken.None, agreed: true);
        }
        catch (Exception ex)
        {
            logger.LogError(ex, "Subscription {Subscription}: the downgrade to {Price} at the period end could not be scheduled again after a failed change; "
                + "the subscription renews at its current price unless the user asks for the downgrade again", subscription.Id, pending.PriceId);
        }
    }
}
