using Billing.ServiceDefaults.Stripe;
using Stripe;

namespace Billing.Subscriptions.Api.Stripe;

/// <summary>
/// Downgrades that change the billing interval (e.g. Pro yearly → Pro monthly). Stripe starts a new period and charges it
/// at once when a subscription's price changes its interval, whatever <c>billing_cycle_anchor</c> says, so such a downgrade
/// is a Stripe subscription schedule instead: phase 1 is the current price until the period end, phase 2 the new price
/// from then, and the schedule releases the subscription after it. Stripe makes the change at the renewal itself (its
/// events then reach Billing like any renewal's). Releasing the schedule undoes the change; any other change of the
/// subscription (cancel, resume, upgrade, another downgrade) releases it first, because Stripe refuses cancellation
/// changes on a subscription a schedule manages and would otherwise apply the old downgrade at the period end.
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
        return schedule.Status is "active" or "not_started" ? schedule : null;
    }

    /// <summary>
    /// The price <paramref name="schedule"/> moves the subscription to when its current period ends, or null when it
    /// changes nothing then (no schedule, or one whose last change has already happened).
    /// </summary>
    public static string? PendingPriceId(SubscriptionSchedule? schedule, Subscription subscription)
    {
        if (schedule is null)
        {
            return null;
        }
        var item = subscription.Items.Data[0];
        var next = schedule.Phases?.Where(p => p.StartDate >= item.CurrentPeriodEnd).OrderBy(p => p.StartDate).FirstOrDefault();
        var priceId = next?.Items?.FirstOrDefault()?.PriceId;
        return priceId is not null && priceId != item.Price.Id ? priceId : null;
    }

    /// <summary>Schedules the move to <paramref name="priceId"/> at the current period's end (replacing a change already scheduled).</summary>
    public static async Task ScheduleAsync(Subscription subscription, SubscriptionSchedule? existing, string priceId, string planId,
        string idempotencyKey, IStripeClient stripe, StripeCalls calls, CancellationToken ct)
    {
        var service = new SubscriptionScheduleService(stripe);
        var schedule = existing ?? await calls.RunAsync(c => service.CreateAsync(
            new SubscriptionScheduleCreateOptions { FromSubscription = subscription.Id },
            new RequestOptions { IdempotencyKey = idempotencyKey + "-create" }, c), ct);
        var item = subscription.Items.Data[0];
        // The phase in force keeps its start (Stripe refuses to move it) and ends with the period the user has paid for.
        var currentStart = schedule.CurrentPhase?.StartDate
            ?? schedule.Phases.Where(p => p.StartDate <= item.CurrentPeriodStart).Select(p => (DateTime?)p.StartDate).LastOrDefault()
            ?? item.CurrentPeriodStart;
        await calls.RunAsync(c => service.UpdateAsync(schedule.Id, new SubscriptionScheduleUpdateOptions
        {
            EndBehavior = "release",
            ProrationBehavior = "none",
            Phases =
            [
                new SubscriptionSchedulePhaseOptions
                {
                    Items = [new SubscriptionSchedulePhaseItemOptions { Price = item.Price.Id, Quantity = item.Quantity }],
                    StartDate = currentStart,
                    EndDate = item.CurrentPeriodEnd,
                    ProrationBehavior = "none",
                },
                new SubscriptionSchedulePhaseOptions
                {
                    // No end: one billing period of the new price, after which the schedule releases the subscription.
                    Items = [new SubscriptionSchedulePhaseItemOptions { Price = priceId, Quantity = 1 }],
                    Metadata = new Dictionary<string, string> { ["planId"] = planId },
                    ProrationBehavior = "none",
                },
            ],
        }, new RequestOptions { IdempotencyKey = idempotencyKey + "-phases" }, c), ct);
    }

    /// <summary>Releases <paramref name="schedule"/>: the subscription stays on its current price and nothing is scheduled.</summary>
    public static Task ReleaseAsync(SubscriptionSchedule schedule, string idempotencyKey, IStripeClient stripe, StripeCalls calls,
        CancellationToken ct) =>
        calls.RunAsync(c => new SubscriptionScheduleService(stripe).ReleaseAsync(schedule.Id, new SubscriptionScheduleReleaseOptions(),
            new RequestOptions { IdempotencyKey = idempotencyKey + "-release" }, c), ct);
}
