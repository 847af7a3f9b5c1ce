using System.Security.Claims;
using Billing.Catalog;
using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Stripe;
using Billing.Subscriptions.Api.Persistence;
using Billing.Subscriptions.Api.Stripe;
using Billing.Subscriptions.Core.Subscriptions;
using Stripe;
using Plan = Billing.Catalog.Plan;
using Price = Billing.Catalog.Price;

namespace Billing.Subscriptions.Api.Endpoints;

/// <summary>
/// Cancel at period end, resume, change plan (upgrade now with proration, downgrade at the period end) and the
/// preview of a change. Each call changes Stripe's subscription; Billing's own state follows from Stripe's events,
/// like every other change, so the portal and the API can never disagree.
/// </summary>
public static class LifecycleEndpoints
{
    public static IEndpointRouteBuilder MapLifecycleApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/subscriptions/me").RequireAuthorization(BillingPolicies.User);
        group.MapPost("/cancel", CancelAsync).WithName("CancelMySubscription")
            .WithSummary("Cancels at the period end; access lasts until then.");
        group.MapPost("/resume", ResumeAsync).WithName("ResumeMySubscription")
            .WithSummary("Undoes a pending cancellation.");
        group.MapPost("/change", ChangeAsync).WithName("ChangeMyPlan")
            .WithSummary("Upgrade: now, prorated and charged at once. Downgrade: at the period end.");
        group.MapGet("/change-preview", PreviewAsync).WithName("PreviewPlanChange")
            .WithSummary("What a change would cost now (Stripe's invoice preview) and when it takes effect.");
        return app;
    }

    public sealed record ChangeRequest(string? PlanId, string? Interval, int? IntervalCount);

    public sealed record ChangePreview(string PlanId, string Interval, int IntervalCount, string Kind, DateTimeOffset EffectiveAt,
        long AmountDueNow, string Currency, long NextAmount);

    private static async Task<IResult> CancelAsync(ClaimsPrincipal user, SubscriptionStore store, IStripeClient stripe, StripeCalls calls,
        BillingCatalog catalog, CheckoutLocks locks, RetiredPrices retired, ILoggerFactory loggers, CancellationToken ct) =>
        await SetCancelAsync(user, store, stripe, calls, catalog, locks, retired, loggers, cancel: true, ct);

    private static async Task<IResult> ResumeAsync(ClaimsPrincipal user, SubscriptionStore store, IStripeClient stripe, StripeCalls calls,
        BillingCatalog catalog, CheckoutLocks locks, RetiredPrices retired, ILoggerFactory loggers, CancellationToken ct) =>
        await SetCancelAsync(user, store, stripe, calls, catalog, locks, retired, loggers, cancel: false, ct);

    private static async Task<IResult> SetCancelAsync(ClaimsPrincipal user, SubscriptionStore store, IStripeClient stripe, StripeCalls calls,
        BillingCatalog catalog, CheckoutLocks locks, RetiredPrices retired, ILoggerFactory loggers, bool cancel, CancellationToken ct)
    {
        var userId = user.UserId()!;
        var current = await store.CurrentAsync(userId, ct);
        if (current is null || !SubscriptionStatus.Live.Contains(current.StripeStatus))
        {
            return NoSubscription();
        }
        // One user's cancel, resume and change run one at a time, each on what Stripe says once the previous one is done.
        var (outcome, held) = await locks.LockSubscriptionChangesAsync(userId, ct);
        await using var _ = held;
        if (Refusal(outcome) is { } refused)
        {
            return refused;
        }
        // One key per request, reused by this request's retries only. A key derived from the stored state (its sequence)
        // repeats for cancel → resume → cancel before Stripe's events arrive, and Stripe would replay the first cancel
        // instead of cancelling again. Setting the flag twice is harmless, so a double click needs no shared key.
        var idempotencyKey = $"billing-{(cancel ? "cancel" : "resume")}-{current.SubscriptionId}-{Guid.NewGuid():N}";
        var subscription = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(current.SubscriptionId, cancellationToken: c), ct);
        var schedule = await ScheduledDowngrades.ActiveAsync(subscription, stripe, calls, ct);
        var unlimited = catalog.IsUnlimited(user.Groups());
        var ending = ScheduledDowngrades.EndsSubscription(schedule);
        if (!cancel && !subscription.CancelAtPeriodEnd && subscription.CancelAt is null && !ending)
        {
            // Nothing to resume (a retry, a stale screen): nothing changes, and a downgrade waiting in a schedule stays.
            return TypedResults.Ok(SubscriptionStatus.View(current with { CancelAtPeriodEnd = false }, catalog, unlimited));
        }
        if (cancel && ending)
        {
            // A schedule (set up in Stripe's Dashboard) already ends the subscription: nothing to add.
            return TypedResults.Ok(SubscriptionStatus.View(current, catalog, unlimited));
        }
        // Stripe refuses cancellation changes on a subscription a schedule manages (a downgrade to another interval): the
        // subscription leaves the schedule first, which drops that downgrade (a cancelled subscription has no next period).
        // Should the cancellation then fail, the downgrade is scheduled again.
        var pending = ending ? null : ScheduledDowngrades.Pending(schedule, subscription);
        var options = new SubscriptionUpdateOptions { CancelAtPeriodEnd = cancel };
        if (!cancel && subscription.CancelAt is not null && !subscription.CancelAtPeriodEnd)
        {
            options.AddExtraParam("cancel_at", ""); // a dated cancellation (the Dashboard's) ends too
        }
        if (schedule is not null)
        {
            await ScheduledDowngrades.ReleaseAsync(schedule, idempotencyKey, stripe, calls, ct);
        }
        Subscription updated;
        try
        {
            // Past the release the outcome must be known: a client that gives up does not cancel this call.
            updated = await calls.RunAsync(c => new SubscriptionService(stripe).UpdateAsync(current.SubscriptionId, options,
                new RequestOptions { IdempotencyKey = idempotencyKey }, c), schedule is null ? ct : CancellationToken.None);
        }
        catch
        {
            await ScheduledDowngrades.RescheduleAsync(subscription, pending, idempotencyKey, stripe, calls, retired, loggers.CreateLogger(LoggerName), ct);
            throw;
        }
        await store.RecordUserActionAsync(userId, current.SubscriptionId, cancel ? "cancel_requested" : "resume_requested",
            cancel ? $"ends at {current.CurrentPeriodEnd:u}" : "pending cancellation undone", ct);
        return TypedResults.Ok(SubscriptionStatus.View(current with { CancelAtPeriodEnd = updated.CancelAtPeriodEnd }, catalog, unlimited));
    }

    private const string LoggerName = "Billing.Subscriptions.Lifecycle";

    private static async Task<IResult> ChangeAsync(ChangeRequest? request, ClaimsPrincipal user, SubscriptionStore store, IStripeClient stripe,
        StripeCalls calls, BillingCatalog catalog, StripePrices prices, CheckoutLocks locks, RetiredPrices retired, ILoggerFactory loggers, TimeProvider clock,
        CancellationToken ct)
    {
        var userId = user.UserId()!;
        var (target, errorResult) = await ResolveAsync(request?.PlanId, request?.Interval, request?.IntervalCount, user, store, catalog, prices, ct);
        if (target is null)
        {
            return errorResult!;
        }
        var (current, plan, price, priceId, overagePriceIds, kind) = target;

        // One user's cancel, resume and change run one at a time, each on what Stripe says once the previous one is done
        // (two tabs: an upgrade and a downgrade at once must not undo each other; a double click finds the first's schedule).
        var (outcome, held) = await locks.LockSubscriptionChangesAsync(userId, ct);
        await using var _ = held;
        if (Refusal(outcome) is { } refused)
        {
            return refused;
        }
        // One key per request, reused by this request's retries only: a key derived from the stored state would make Stripe
        // replay a declined upgrade's 402 for a day after the card is fixed. A repeated request is stopped below instead.
        var idempotencyKey = $"billing-change-{current.SubscriptionId}-{price.LookupKey}-{Guid.NewGuid():N}";
        var subscription = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(current.SubscriptionId, cancellationToken: c), ct);
        var item = subscription.PlanItem();
        var schedule = await ScheduledDowngrades.ActiveAsync(subscription, stripe, calls, ct);
        if (ScheduledDowngrades.EndsSubscription(schedule))
        {
            // A schedule (set up in Stripe's Dashboard) ends the subscription: changing it would drop that cancellation.
            return CancellationPending();
        }
        var pending = ScheduledDowngrades.Pending(schedule, subscription);
        if (item.Price.Id == priceId)
        {
            if (pending is not null)
            {
                // A downgrade waits in a schedule (another interval, other metered items): keeping the price the user pays now undoes it.
                await ScheduledDowngrades.ReleaseAsync(schedule!, idempotencyKey, stripe, calls, ct);
                await store.RecordUserActionAsync(userId, current.SubscriptionId, "downgrade_undone",
                    $"{current.PlanId} {price.Interval}×{price.IntervalCount} kept; the change scheduled for {item.CurrentPeriodEnd:u} is dropped", ct);
                return TypedResults.Ok(new
                {
                    planId = plan.Id, interval = price.Interval, intervalCount = price.IntervalCount,
                    kind = "restore", effectiveAt = clock.GetUtcNow(),
                });
            }
            // Stripe already bills this price (a double click, or a change whose events have not reached us yet): nothing to do,
            // and nothing to charge a second time.
            return Problems.Problem(409, "no_change", "You are already on this plan and price.");
        }
        if (kind == PlanChangeKind.Upgrade && subscription.Status is "past_due" or "unpaid" or "paused")
        {
            // An upgrade charges only its proration, and that invoice, paid, would end the grace period or the suspension
            // (Stripe's status follows the latest invoice) while the renewal that failed stays unpaid. A subscription Stripe
            // has paused (set to pause on a failed renewal; Billing's trials without a card end canceled instead) is the
            // same case: the API calls it past_due, and it renews again once the open invoice is paid.
            return Problems.Problem(409, "payment_past_due", "A payment of your subscription is past due.",
                "Pay the open invoice first (POST /api/billing-portal), then change the plan; a downgrade is possible now.");
        }
        if (RecordLags(subscription, current, catalog))
        {
            return SubscriptionChanging();
        }
        // What an upgrade does to a trial, decided once: the card check below and the update agree on it.
        var trial = TrialEndFor(subscription, plan, clock.GetUtcNow());
        if (kind == PlanChangeKind.Upgrade && trial.Now && !await PaymentMethods.OnFileAsync(subscription, stripe, calls, ct))
        {
            // A trial started without a card (a plan whose trial needs none): ending it now charges the new plan in full,
            // and there is nothing to charge. Stripe would refuse the payment; asking for a card says what to do.
            return Problems.Problem(409, "payment_method_required", "Add a card before this upgrade.",
                "The upgrade ends your free trial and charges the new plan now, and no card is on file. Add one in the billing portal, then upgrade; your trial goes on meanwhile.");
        }
        if (kind == PlanChangeKind.None)
        {
            // Billing's record says this price, Stripe bills another one: a change whose events are on their way. Asking
            // again once they have arrived is classified afresh.
            return Problems.Problem(409, "no_change", "You are already on this plan and price.");
        }
        if (kind == PlanChangeKind.Restore && !DowngradePending(subscription, plan.Id))
        {
            // The same plan on another price (e.g. one the catalog has since replaced) without a pending downgrade to undo.
            return Problems.Problem(409, "no_change", "You are already on this plan.");
        }
        if (kind == PlanChangeKind.Downgrade && (PlanChangeRules.ChangesInterval(
                item.Price.Recurring?.Interval ?? current.Interval, (int)(item.Price.Recurring?.IntervalCount ?? current.IntervalCount), price)
            || !OverageItems.Match(subscription, overagePriceIds)))
        {
            if (subscription.CancelAtPeriodEnd || subscription.CancelAt is not null)
            {
                return CancellationPending();
            }
            // Stripe would start a new period and charge it now (or, swapping metered overage items without proration, drop
            // the overage used so far); a schedule makes the change at the renewal instead.
            await ScheduledDowngrades.ScheduleAsync(subscription, schedule, new PendingDowngrade(priceId, overagePriceIds, plan.Id),
                idempotencyKey, stripe, calls, retired, ct);
            var at = new DateTimeOffset(item.CurrentPeriodEnd.ToUniversalTime(), TimeSpan.Zero);
            await store.RecordUserActionAsync(userId, current.SubscriptionId, "downgrade_scheduled",
                $"{current.PlanId} → {plan.Id} {price.Interval}×{price.IntervalCount}, effective {at:u} (subscription schedule)", ct);
            return TypedResults.Ok(new
            {
                planId = plan.Id, interval = price.Interval, intervalCount = price.IntervalCount, kind = "downgrade", effectiveAt = at,
            });
        }
        if (schedule is not null)
        {
            // Any other change replaces a downgrade waiting in a schedule (Stripe would apply it at the period end); should the
            // change fail, that downgrade is scheduled again.
            await ScheduledDowngrades.ReleaseAsync(schedule, idempotencyKey, stripe, calls, ct);
        }
        // An upgrade also swaps the metered overage items to the new plan's (Stripe bills a removed one's usage so far on the
        // upgrade's invoice); other changes here keep them: a downgrade that changes them went through a schedule above.
        // Undoing a downgrade puts back the very price the user paid (a grandfathered one stays), not the catalog's current one.
        var changes = kind == PlanChangeKind.Upgrade ? OverageItems.Changes(subscription, priceId, overagePriceIds)
            : kind == PlanChangeKind.Restore ? [new ItemChange(item.Id, EntitledPriceOf(subscription, current.PlanId) ?? priceId)]
            : [new ItemChange(item.Id, priceId)];
        var options = new SubscriptionUpdateOptions
        {
            Items = OverageItems.ToUpdate(changes),
            Metadata = new Dictionary<string, string> { ["planId"] = plan.Id },
        };
        if (kind == PlanChangeKind.Upgrade)
        {
            options.ProrationBehavior = "always_invoice";
            options.PaymentBehavior = "error_if_incomplete"; // a declined card changes nothing
            EntitledPlans.Clear(options.Metadata);
            var (endTrialNow, trialEndsAt) = trial;
            if (endTrialNow)
            {
                options.TrialEnd = SubscriptionTrialEnd.Now; // Stripe starts a paid period now, charged in full
            }
            else if (trialEndsAt is { } at)
            {
                options.TrialEnd = at;
            }
        }
        else if (kind == PlanChangeKind.Restore)
        {
            // The plan the user paid for until the period end, at its own price again: nothing to charge, no downgrade pending.
            options.ProrationBehavior = "none";
            options.BillingCycleAnchor = new SubscriptionBillingCycleAnchorOptions { Type = "unchanged" };
            EntitledPlans.Clear(options.Metadata);
        }
        else
        {
            // Stripe charges the new price from the next period; until then the user keeps the plan they paid for.
            options.ProrationBehavior = "none";
            options.BillingCycleAnchor = new SubscriptionBillingCycleAnchorOptions { Type = "unchanged" };
            // The price paid for this period: the item's, or (a second downgrade while one is pending) the one recorded then.
            EntitledPlans.Record(options.Metadata, current.PlanId, EntitledPriceOf(subscription, current.PlanId) ?? item.Price.Id, priceId,
                item.CurrentPeriodEnd);
        }

        string? restored = null;
        try
        {
            if (kind == PlanChangeKind.Upgrade)
            {
                // A downgrade within the interval has already put the lower price on Stripe's item (without proration; the user
                // keeps the plan paid for until the renewal). An upgrade prorates from the item's price, so it would credit the
                // unused time at the lower price: the paid-for price goes back first, without proration, and returns should the
                // upgrade fail (as a released schedule does, also when this step fails).
                restored = await RestoreEntitledPriceAsync(subscription, current, catalog, prices, idempotencyKey, stripe, calls, retired, ct);
            }
            // Undoing a downgrade names the price paid for again: a grandfathered one the catalog has since archived, too.
            string?[] paid = kind == PlanChangeKind.Restore ? [EntitledPriceOf(subscription, current.PlanId)] : [];
            // Past a release the outcome must be known: a client that gives up does not cancel this call.
            await retired.RunAsync(paid, suffix => calls.RunAsync(c => new SubscriptionService(stripe).UpdateAsync(
                current.SubscriptionId, options, new RequestOptions { IdempotencyKey = idempotencyKey + suffix }, c),
                schedule is null && restored is null ? ct : CancellationToken.None));
        }
        catch (StripeException ex) when (ex.StripeError?.Type == "card_error" || ex.HttpStatusCode == System.Net.HttpStatusCode.PaymentRequired)
        {
            await ScheduledDowngrades.RescheduleAsync(subscription, pending, idempotencyKey, stripe, calls, retired, loggers.CreateLogger(LoggerName), ct);
            await RedoDowngradeAsync(subscription, current, restored, priceId, idempotencyKey, stripe, calls, retired, loggers.CreateLogger(LoggerName));
            return Problems.Problem(402, "payment_failed", "The prorated payment for the upgrade failed; nothing changed.", ex.StripeError?.Message ?? ex.Message);
        }
        catch
        {
            await ScheduledDowngrades.RescheduleAsync(subscription, pending, idempotencyKey, stripe, calls, retired, loggers.CreateLogger(LoggerName), ct);
            await RedoDowngradeAsync(subscription, current, restored, priceId, idempotencyKey, stripe, calls, retired, loggers.CreateLogger(LoggerName));
            throw;
        }

        var effectiveAt = kind == PlanChangeKind.Downgrade ? current.CurrentPeriodEnd : clock.GetUtcNow();
        var change = kind switch
        {
            PlanChangeKind.Upgrade => "upgrade_requested",
            PlanChangeKind.Restore => "downgrade_undone",
            _ => "downgrade_scheduled",
        };
        await store.RecordUserActionAsync(userId, current.SubscriptionId, change,
            $"{current.PlanId} → {plan.Id} {price.Interval}×{price.IntervalCount}, effective {effectiveAt:u}", ct);
        return TypedResults.Ok(new
        {
            planId = plan.Id, interval = price.Interval, intervalCount = price.IntervalCount,
            kind = kind.ToString().ToLowerInvariant(), effectiveAt,
        });
    }

    /// <summary>
    /// The price of the plan the user paid for this period (<see cref="SubscriptionRecord.PlanId"/>: the entitled one) when a
    /// downgrade within the interval has already put a lower price on Stripe's item; null when none is pending.
    /// <c>Recorded</c> when it is the price recorded as paid (which may be a grandfathered one the catalog has since
    /// archived), not the catalog's price of the plan (looked up, possibly from a cache a catalog push has just made stale).
    /// </summary>
    private static async Task<(string Id, bool Recorded)?> EntitledPriceAsync(Subscription subscription, SubscriptionRecord current, BillingCatalog catalog,
        StripePrices prices, CancellationToken ct)
    {
        var item = subscription.PlanItem();
        if (EntitledPriceOf(subscription, current.PlanId) is { } recorded)
        {
            return recorded != item.Price.Id ? (recorded, true) : null;
        }
        if (!DowngradePending(subscription, current.PlanId)
            || catalog.FindPlan(current.PlanId)?.FindPrice(item.Price.Recurring?.Interval ?? current.Interval, (int)(item.Price.Recurring?.IntervalCount ?? current.IntervalCount)) is not { } paid)
        {
            return null;
        }
        return await prices.FindAsync(paid.LookupKey, ct) is { } id && id != item.Price.Id ? (id, false) : null;
    }

    /// <summary>Puts the entitled price back on the item (no proration, same period); returns the lower price it replaced.</summary>
    private static async Task<string?> RestoreEntitledPriceAsync(Subscription subscription, SubscriptionRecord current, BillingCatalog catalog,
        StripePrices prices, string idempotencyKey, IStripeClient stripe, StripeCalls calls, RetiredPrices retired, CancellationToken ct)
    {
        if (await EntitledPriceAsync(subscription, current, catalog, prices, ct) is not var (entitled, recorded))
        {
            return null;
        }
        var item = subscription.PlanItem();
        await SetPlanPriceUnproratedAsync(subscription, entitled, paid: recorded,
            EntitledPlans.Clear(new Dictionary<string, string> { ["planId"] = current.PlanId }),
            idempotencyKey + "-restore", stripe, calls, retired);
        return item.Price.Id;
    }

    /// <summary>
    /// Puts <paramref name="priceId"/> on the plan item without proration and without moving the period (what was paid for
    /// this period stays paid; Stripe bills the price from the renewal), with <paramref name="metadata"/> — also, when
    /// <paramref name="paid"/> (a price the subscription pays or paid, not one looked up from the catalog), a grandfathered
    /// price the catalog has since archived. Not cancelled by a client that leaves: the caller's next step depends on its outcome.
    /// </summary>
    private static Task SetPlanPriceUnproratedAsync(Subscription subscription, string priceId, bool paid, Dictionary<string, string> metadata,
        string idempotencyKey, IStripeClient stripe, StripeCalls calls, RetiredPrices retired) =>
        retired.RunAsync(paid ? [priceId] : [], suffix => calls.RunAsync(c => new SubscriptionService(stripe).UpdateAsync(subscription.Id, new SubscriptionUpdateOptions
        {
            Items = OverageItems.ToUpdate([new ItemChange(subscription.PlanItem().Id, priceId)]),
            ProrationBehavior = "none",
            BillingCycleAnchor = new SubscriptionBillingCycleAnchorOptions { Type = "unchanged" },
            Metadata = metadata,
        }, new RequestOptions { IdempotencyKey = idempotencyKey + suffix }, c), CancellationToken.None));

    /// <summary>
    /// After a failed upgrade: the downgrade <see cref="RestoreEntitledPriceAsync"/> undid is pending again, as before — only
    /// if the upgrade really changed nothing (a timeout may hide an upgrade Stripe applied and charged: putting the lower
    /// price back would take it away). A failure here is logged, not thrown over the upgrade's own error.
    /// </summary>
    private static async Task RedoDowngradeAsync(Subscription subscription, SubscriptionRecord current, string? lowerPriceId, string upgradePriceId,
        string idempotencyKey, IStripeClient stripe, StripeCalls calls, RetiredPrices retired, ILogger logger)
    {
        if (lowerPriceId is null)
        {
            return;
        }
        try
        {
            var now = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(subscription.Id, cancellationToken: c), CancellationToken.None);
            if (now.PlanItem().Price.Id == lowerPriceId || now.PlanItem().Price.Id == upgradePriceId
                || now.Metadata.GetValueOrDefault("planId") != current.PlanId)
            {
                // The lower price is back already, or the upgrade went through: the item bills its price (also when it is
                // the plan paid for at another interval, whose metadata names the same plan) or its metadata names the new plan.
                return;
            }
            // The lower price was on the item (a catalog push may have archived it since): the renewal bills it, as agreed.
            await SetPlanPriceUnproratedAsync(subscription, lowerPriceId, paid: true, EntitledPlans.Copy(new Dictionary<string, string>
            {
                ["planId"] = subscription.Metadata.GetValueOrDefault("planId") ?? current.PlanId,
            }, subscription), idempotencyKey + "-redo", stripe, calls, retired);
        }
        catch (Exception ex)
        {
            logger.LogError(ex, "Subscription {Subscription}: the upgrade failed and the pending downgrade to price {Price} could not be put back; "
                + "the user is billed the plan they paid for at the renewal unless they downgrade again", subscription.Id, lowerPriceId);
        }
    }

    /// <summary>
    /// A trial is the plan's own: an upgrade during one keeps at most the new plan's trial, counted from the trial's start.
    /// A plan without a trial, or whose trial would be over by now, ends it now (Stripe then charges the new price in full
    /// for a period from now); a shorter one ends it earlier; otherwise the trial goes on (both false/null).
    /// </summary>
    private static (bool Now, DateTime? At) TrialEndFor(Subscription subscription, Plan plan, DateTimeOffset now)
    {
        if (subscription.Status != "trialing" || subscription.TrialEnd is not { } trialEnd)
        {
            return (false, null);
        }
        if (plan.TrialDays == 0)
        {
            return (true, null); // whatever Stripe's clock says (a test clock runs ahead of this one)
        }
        var allowed = (subscription.TrialStart ?? subscription.StartDate).ToUniversalTime().AddDays(plan.TrialDays);
        return allowed <= now.UtcDateTime ? (true, null)
            : allowed < trialEnd.ToUniversalTime() ? (false, allowed)
            : (false, null);
    }

    /// <summary>
    /// Stripe gives the user another plan than Billing's record says: a renewal applied a scheduled downgrade, or a change
    /// was made elsewhere, and its events have not reached Billing yet. Classified against the record, a change would charge
    /// or entitle the wrong plan (a "downgrade" from a plan the user no longer has wrote that plan as the entitlement for a
    /// whole new period, and charged nothing for what was an upgrade).
    /// </summary>
    private static bool RecordLags(Subscription subscription, SubscriptionRecord current, BillingCatalog catalog) =>
        !DowngradePending(subscription, current.PlanId) && OverageItems.PlanOf(subscription, catalog) is var (billed, _) && billed.Id != current.PlanId;

    private static IResult SubscriptionChanging() =>
        Problems.Problem(409, "subscription_changing", "Your subscription changed a moment ago.",
            "Stripe has a change (a renewal, or a change made elsewhere) that Billing is still applying; try again in a few seconds.");

    /// <summary>The price recorded as paid for <paramref name="planId"/> while a downgrade from it is pending (none recorded by
    /// downgrades made before it was; the catalog's price for the plan is used then).</summary>
    private static string? EntitledPriceOf(Subscription subscription, string planId) =>
        DowngradePending(subscription, planId) && subscription.Metadata.GetValueOrDefault(EntitledPlans.PriceKey) is { Length: > 0 } priceId ? priceId : null;


    /// <summary>
    /// A downgrade from <paramref name="planId"/> is scheduled and its period has not rolled over yet: Stripe still bills
    /// the period the user paid <paramref name="planId"/> for. After the renewal (whose events may not have reached Billing
    /// yet) the lower price is what was charged, and going back up is an upgrade, not a restore; after a switch to another
    /// price in Stripe's customer portal, that price is the user's plan (<see cref="EntitledPlans.Pending"/>).
    /// </summary>
    private static bool DowngradePending(Subscription subscription, string planId) => EntitledPlans.Pending(subscription)?.PlanId == planId;

    private static async Task<IResult> PreviewAsync(string? planId, string? interval, int? intervalCount, ClaimsPrincipal user,
        SubscriptionStore store, IStripeClient stripe, StripeCalls calls, BillingCatalog catalog, StripePrices prices, TimeProvider clock,
        RetiredPrices retired, CancellationToken ct)
    {
        var (target, errorResult) = await ResolveAsync(planId, interval, intervalCount, user, store, catalog, prices, ct);
        if (target is null)
        {
            return errorResult!;
        }
        var (current, plan, price, priceId, overagePriceIds, kind) = target;
        var subscription = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(current.SubscriptionId, cancellationToken: c), ct);
        if (kind is PlanChangeKind.Restore or PlanChangeKind.None)
        {
            // As the change itself decides: only a pending downgrade (to this plan's entitlement, or scheduled away from the
            // price Stripe bills now) can be undone.
            var undoesSchedule = subscription.PlanItem().Price.Id == priceId
                && ScheduledDowngrades.Pending(await ScheduledDowngrades.ActiveAsync(subscription, stripe, calls, ct), subscription) is not null;
            kind = undoesSchedule || (kind == PlanChangeKind.Restore && DowngradePending(subscription, plan.Id)) ? PlanChangeKind.Restore : PlanChangeKind.None;
        }
        if (kind != PlanChangeKind.None && RecordLags(subscription, current, catalog))
        {
            return SubscriptionChanging();
        }
        if (kind != PlanChangeKind.Upgrade)
        {
            return TypedResults.Ok(new ChangePreview(plan.Id, price.Interval, price.IntervalCount, kind.ToString().ToLowerInvariant(),
                kind == PlanChangeKind.Restore ? clock.GetUtcNow() : current.CurrentPeriodEnd, 0, price.Currency, price.Amount));
        }

        var now = clock.GetUtcNow();
        if (subscription.Status == "trialing")
        {
            // Nothing is prorated during a trial: the upgrade charges the new price in full if it ends the trial, else nothing.
            var (endsTrial, _) = TrialEndFor(subscription, plan, now);
            return TypedResults.Ok(new ChangePreview(plan.Id, price.Interval, price.IntervalCount, "upgrade", now, endsTrial ? price.Amount : 0,
                price.Currency, price.Amount));
        }
        // Going back to the price paid for may name a grandfathered price the catalog has since archived.
        Task<Invoice> PreviewOf(List<ItemChange> changes, string? paid = null) => retired.RunAsync([paid], _ => calls.RunAsync(c =>
            new InvoiceService(stripe).CreatePreviewAsync(new InvoiceCreatePreviewOptions
            {
                Subscription = current.SubscriptionId,
                SubscriptionDetails = new InvoiceSubscriptionDetailsOptions
                {
                    Items = OverageItems.ToPreview(changes),
                    ProrationBehavior = "always_invoice",
                    ProrationDate = now.UtcDateTime,
                },
            }, cancellationToken: c), ct));
        var preview = await PreviewOf(OverageItems.Changes(subscription, priceId, overagePriceIds));
        var due = preview.AmountDue;
        // While a downgrade within the interval is pending the change first puts the paid-for price back (no proration):
        // what is due is the upgrade from the lower price less what going back to the paid-for one would cost.
        if (await EntitledPriceAsync(subscription, current, catalog, prices, ct) is var (entitled, recorded))
        {
            due = Math.Max(0, due - (await PreviewOf([new ItemChange(subscription.PlanItem().Id, entitled)], recorded ? entitled : null)).AmountDue);
        }
        return TypedResults.Ok(new ChangePreview(plan.Id, price.Interval, price.IntervalCount, "upgrade", now, due, preview.Currency, price.Amount));
    }

    /// <summary>Where a change goes: the plan, its price (and Stripe's id of it), the metered overage prices that go with it.</summary>
    private sealed record ChangeTarget(SubscriptionRecord Current, Plan Plan, Price Price, string PriceId, IReadOnlyList<string> OveragePriceIds,
        PlanChangeKind Kind);

    private static async Task<(ChangeTarget? Target, IResult? Error)> ResolveAsync(
        string? planId, string? interval, int? intervalCount, ClaimsPrincipal user, SubscriptionStore store, BillingCatalog catalog,
        StripePrices prices, CancellationToken ct)
    {
        var current = await store.CurrentAsync(user.UserId()!, ct);
        var (choice, errors) = CheckoutRules.Validate(new CheckoutRequest(planId, interval, intervalCount, null, null), catalog, "http://x", "http://x",
            current?.PlanId);
        if (choice is null)
        {
            if (catalog.FindPlan(planId) is { IsFree: true })
            {
                errors["planId"] = ["to move to the free plan, cancel the subscription (POST /api/subscriptions/me/cancel)"];
            }
            return (null, Problems.Validation(errors));
        }
        if (current is null || !SubscriptionStatus.Live.Contains(current.StripeStatus))
        {
            return (null, NoSubscription());
        }
        var priceId = await prices.FindAsync(choice.Price.LookupKey, ct);
        if (priceId is null)
        {
            return (null, StripePrices.NotInStripe(choice.Price.LookupKey));
        }
        var kind = PlanChangeRules.Classify(catalog, current.PlanId, current.Interval, current.IntervalCount, choice.Plan, choice.Price);
        if (current.PriceId == priceId)
        {
            kind = PlanChangeKind.None;
        }
        else if (kind == PlanChangeKind.None)
        {
            // The plan Billing shows (the entitled one while a downgrade is pending) on another price: asking for it undoes
            // the downgrade. Only the price decides "no change".
            kind = PlanChangeKind.Restore;
        }
        // Only a move to another plan price takes that price's metered overage prices (undoing a downgrade keeps the items).
        IReadOnlyList<string> overagePriceIds = [];
        if (kind is PlanChangeKind.Upgrade or PlanChangeKind.Downgrade)
        {
            (overagePriceIds, var missing) = await OverageItems.FindAsync(choice.Plan, choice.Price, prices, ct);
            if (missing is not null)
            {
                return (null, StripePrices.NotInStripe(missing));
            }
        }
        return (new ChangeTarget(current, choice.Plan, choice.Price, priceId, overagePriceIds, kind), null);
    }

    private static IResult CancellationPending() =>
        Problems.Problem(409, "cancellation_pending", "Your subscription ends at the period end.",
            "Resume it first (POST /api/subscriptions/me/resume) to move to another plan at the renewal.");

    private static IResult? Refusal(UserLock outcome) => outcome switch
    {
        UserLock.Busy => Problems.Problem(409, "change_in_progress", "Another change of your subscription is in progress.",
            "Try again in a moment."),
        UserLock.Unavailable => Problems.Problem(503, "busy", "Too many subscription changes at once.", "Try again in a moment."),
        _ => null,
    };

    internal static IResult NoSubscription() =>
        Problems.Problem(404, "no_subscription", "You have no subscription.", "Start one with POST /api/subscriptions/checkout.");
}
