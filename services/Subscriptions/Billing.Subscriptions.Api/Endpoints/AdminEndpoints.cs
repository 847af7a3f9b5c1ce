using Billing.Catalog;
using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Stripe;
using Billing.Subscriptions.Api.Persistence;
using Billing.Subscriptions.Api.Stripe;
using Billing.Subscriptions.Core.Subscriptions;
using Dapper;
using Npgsql;
using Stripe;

namespace Billing.Subscriptions.Api.Endpoints;

/// <summary><c>GET /api/admin/subscriptions/verify</c>: every live subscription in Billing compared with Stripe's own object.</summary>
public static class AdminEndpoints
{
    public sealed record Difference(string SubscriptionId, string UserId, string Field, string? Billing, string? Stripe);

    public static IEndpointRouteBuilder MapSubscriptionAdminApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/admin/subscriptions/verify", VerifyAsync)
            .RequireAuthorization(BillingPolicies.Admin)
            .WithName("VerifySubscriptions")
            .WithSummary("Compares each live subscription with Stripe's object and lists every difference.");
        app.MapPost("/api/admin/subscriptions/overage-items", AddOverageItemsAsync)
            .RequireAuthorization(BillingPolicies.Admin)
            .WithName("AddOverageItems")
            .WithSummary("Adds the metered overage prices their plan bills to live subscriptions that lack them (apply=true; else a dry run).");
        return app;
    }

    /// <summary>
    /// Stripe's subscriptions that are not over, a page of 100 at a time (not one call per subscription: a few hundred
    /// subscriptions one by one outlast the gateway's timeout).
    /// </summary>
    private static async Task<Dictionary<string, Subscription>> StripeSubscriptionsAsync(IStripeClient stripe, StripeCalls calls, CancellationToken ct)
    {
        var theirs = new Dictionary<string, Subscription>(StringComparer.Ordinal);
        string? after = null;
        do
        {
            var page = await calls.RunAsync(c => new SubscriptionService(stripe).ListAsync(
                new SubscriptionListOptions { Limit = 100, StartingAfter = after }, cancellationToken: c), ct);
            foreach (var s in page.Data)
            {
                theirs[s.Id] = s;
            }
            after = page.HasMore && page.Data.Count > 0 ? page.Data[^1].Id : null;
        }
        while (after is not null);
        return theirs;
    }

    public sealed record OverageFix(string SubscriptionId, string UserId, IReadOnlyList<string> Add, string Outcome);

    /// <summary>
    /// <c>POST /api/admin/subscriptions/overage-items?apply=true&amp;limit=</c>: a live subscription whose plan bills a meter's
    /// overage but holds no metered item on that meter (made before its plan billed overage, or before this release) gets
    /// the plan price's overage price, without proration — Stripe bills only usage from then on, nothing in arrears. Each
    /// one is changed under the user's subscription-change lock and re-read from Stripe inside it, so a plan change made
    /// meanwhile is never doubled. Without <c>apply</c> it lists what it would add. At most <c>limit</c> (50) are changed
    /// per call (<c>more</c> says whether to call again); subscriptions a schedule manages are left for their next change;
    /// a subscription that fails is reported and the rest go on.
    /// </summary>
    private static async Task<IResult> AddOverageItemsAsync(bool? apply, int? limit, NpgsqlDataSource db, IStripeClient stripe, StripeCalls calls,
        BillingCatalog catalog, StripePrices prices, CheckoutLocks locks, CancellationToken ct)
    {
        var max = Math.Clamp(limit ?? 50, 1, 500);
        await using var connection = await db.OpenConnectionAsync(ct);
        var live = (await connection.QueryAsync<(string SubscriptionId, string UserId)>(new CommandDefinition(
            """
            SELECT subscription_id, user_id FROM subscriptions WHERE stripe_status = ANY(@live) ORDER BY subscription_id
            """, new { live = SubscriptionStatus.Live.ToArray() }, cancellationToken: ct))).ToList();
        await connection.CloseAsync();
        var meterEventNames = await OverageItems.MeterEventNamesAsync(stripe, calls, ct);
        List<OveragePrice> Missing(Subscription subscription) =>
            OverageItems.PlanOf(subscription, catalog) is var (plan, price)
                ? BillingCatalog.OveragePrices(plan, price).Where(o => !OverageItems.HeldEventNames(subscription, meterEventNames).Contains(o.EventName)).ToList()
                : [];

        var theirs = await StripeSubscriptionsAsync(stripe, calls, ct);
        var fixes = new List<OverageFix>();
        var changed = 0;
        var more = false;
        foreach (var (subscriptionId, userId) in live)
        {
            // Live in Billing but over (or gone) in Stripe: verify reports those; nothing to add to them.
            if (!theirs.TryGetValue(subscriptionId, out var listed) || Missing(listed) is not { Count: > 0 } missing)
            {
                continue;
            }
            var keys = missing.Select(o => o.LookupKey).ToList();
            if (!string.IsNullOrEmpty(listed.ScheduleId))
            {
                fixes.Add(new OverageFix(subscriptionId, userId, keys, "skipped: a subscription schedule manages it"));
                continue;
            }
            if (apply != true)
            {
                fixes.Add(new OverageFix(subscriptionId, userId, keys, "would add"));
                continue;
            }
            if (changed == max)
            {
                more = true;
                break;
            }
            changed++;
            fixes.Add(await AddAsync(subscriptionId, userId, keys));
        }
        return TypedResults.Ok(new { applied = apply == true, checkedCount = live.Count, more, subscriptions = fixes });

        async Task<OverageFix> AddAsync(string subscriptionId, string userId, List<string> keys)
        {
            var (outcome, held) = await locks.LockSubscriptionChangesAsync(userId, ct);
            await using var _ = held;
            if (outcome != UserLock.Held)
            {
                return new OverageFix(subscriptionId, userId, keys, "failed: another change of this subscription is in progress; run again");
            }
            try
            {
                var subscription = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(subscriptionId, cancellationToken: c), ct);
                var missing = Missing(subscription);
                if (missing.Count == 0 || !string.IsNullOrEmpty(subscription.ScheduleId) || subscription.Status is "canceled" or "incomplete_expired")
                {
                    return new OverageFix(subscriptionId, userId, keys, "unchanged: changed meanwhile");
                }
                var ids = new List<string>();
                foreach (var overage in missing)
                {
                    ids.Add(await prices.FindAsync(overage.LookupKey, ct)
                        ?? throw new InvalidOperationException($"No active Stripe price has lookup key \"{overage.LookupKey}\": run 'deploy/billing catalog push'."));
                }
                // One key for this request's retries (a timeout whose update Stripe applied is answered, not applied again),
                // new for each run of the command (Stripe keeps a key a day).
                var idempotencyKey = $"billing-overage-items-{subscriptionId}-{Guid.NewGuid():N}";
                await calls.RunAsync(c => new SubscriptionService(stripe).UpdateAsync(subscriptionId, new SubscriptionUpdateOptions
                {
                    Items = ids.Select(id => new SubscriptionItemOptions { Price = id }).ToList(),
                    ProrationBehavior = "none",
                }, new RequestOptions { IdempotencyKey = idempotencyKey }, c), ct);
                return new OverageFix(subscriptionId, userId, missing.Select(o => o.LookupKey).ToList(), "added");
            }
            catch (Exception ex) when (ex is StripeException or StripeUnavailableException or InvalidOperationException && !ct.IsCancellationRequested)
            {
                return new OverageFix(subscriptionId, userId, keys, "failed: " + ex.Message);
            }
        }
    }

    private static async Task<IResult> VerifyAsync(NpgsqlDataSource db, IStripeClient stripe, StripeCalls calls, BillingCatalog catalog, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var live = (await connection.QueryAsync<(string SubscriptionId, string UserId, string PriceId, string StripeStatus, DateTime PeriodEnd, bool CancelAtPeriodEnd)>(
            new CommandDefinition(
                """
                SELECT subscription_id, user_id, price_id, stripe_status, current_period_end, cancel_at_period_end
                FROM subscriptions WHERE stripe_status = ANY(@live) ORDER BY subscription_id
                """, new { live = SubscriptionStatus.Live.ToArray() }, cancellationToken: ct))).ToList();

        // Billing's live ones that are not among Stripe's are read one by one (they ended in Stripe, or are gone).
        var theirs = await StripeSubscriptionsAsync(stripe, calls, ct);
        var differences = new List<Difference>();
        Dictionary<string, string>? meterEventNames = null;
        foreach (var s in live)
        {
            if (!theirs.TryGetValue(s.SubscriptionId, out var subscription))
            {
                try
                {
                    subscription = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(s.SubscriptionId, cancellationToken: c), ct);
                }
                catch (StripeException ex) when (ex.StripeError?.Code == "resource_missing")
                {
                    differences.Add(new Difference(s.SubscriptionId, s.UserId, "exists", "yes", "no"));
                    continue;
                }
            }
            var item = subscription.PlanItemOrNull();
            if (item is null)
            {
                differences.Add(new Difference(s.SubscriptionId, s.UserId, "price", s.PriceId, "(no licensed item)"));
                continue;
            }
            void Compare(string field, string? mine, string? stripeValue)
            {
                if (!string.Equals(mine, stripeValue, StringComparison.Ordinal))
                {
                    differences.Add(new Difference(s.SubscriptionId, s.UserId, field, mine, stripeValue));
                }
            }
            Compare("status", s.StripeStatus, subscription.Status);
            Compare("price", s.PriceId, item.Price.Id);
            Compare("currentPeriodEnd", DateTime.SpecifyKind(s.PeriodEnd, DateTimeKind.Utc).ToString("O"), DateTime.SpecifyKind(item.CurrentPeriodEnd, DateTimeKind.Utc).ToString("O"));
            Compare("cancelAtPeriodEnd", s.CancelAtPeriodEnd.ToString(), subscription.CancelAtPeriodEnd.ToString());
            if (OverageItems.PlanOf(subscription, catalog) is var (plan, price))
            {
                // One metered item per meter whose overage the plan bills: without it (a subscription made before its plan
                // billed overage) Usage reports the overage and no invoice carries it; with two on one meter it is billed twice.
                meterEventNames ??= await OverageItems.MeterEventNamesAsync(stripe, calls, ct);
                Compare("overageMeters", string.Join(",", BillingCatalog.OveragePrices(plan, price).Select(o => o.EventName).Order(StringComparer.Ordinal)),
                    string.Join(",", OverageItems.HeldEventNames(subscription, meterEventNames)));
            }
        }
        // A subscription Stripe bills for one of Billing's users (its metadata names the user) that Billing has not recorded
        // as live: its webhooks were lost, or Billing ended it while Stripe did not.
        var mine = live.Select(s => s.SubscriptionId).ToHashSet(StringComparer.Ordinal);
        foreach (var s in theirs.Values.Where(s => !mine.Contains(s.Id) && s.Status is "trialing" or "active" or "past_due" or "unpaid" or "paused")
                     .OrderBy(s => s.Id, StringComparer.Ordinal))
        {
            if (s.Metadata?.GetValueOrDefault("userId") is { Length: > 0 } userId)
            {
                differences.Add(new Difference(s.Id, userId, "live", "no", "yes"));
            }
        }
        return TypedResults.Ok(new { ok = differences.Count == 0, checkedCount = live.Count, differences });
    }
}
