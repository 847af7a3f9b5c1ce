using Billing.Catalog;
using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Stripe;
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
        return app;
    }

    private static async Task<IResult> VerifyAsync(NpgsqlDataSource db, IStripeClient stripe, StripeCalls calls, BillingCatalog catalog, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var live = (await connection.QueryAsync<(string SubscriptionId, string UserId, string PriceId, string StripeStatus, DateTime PeriodEnd, bool CancelAtPeriodEnd)>(
            new CommandDefinition(
                """
                SELECT subscription_id, user_id, price_id, stripe_status, current_period_end, cancel_at_period_end
                FROM subscriptions WHERE stripe_status IN ('trialing', 'active', 'past_due', 'unpaid', 'paused') ORDER BY subscription_id
                """, cancellationToken: ct))).ToList();

        // Stripe's subscriptions that are not over, a page of 100 at a time (not one call per subscription: a few hundred
        // subscriptions one by one outlast the gateway's timeout). Billing's live ones that are not among them are read
        // one by one (they ended in Stripe, or are gone).
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

        var differences = new List<Difference>();
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
            var item = subscription.PlanItem();
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
            if (catalog.FindByLookupKey(item.Price.LookupKey) is var (plan, price))
            {
                // The metered items that bill the plan's overage (a subscription made before its plan billed overage lacks them:
                // Usage reports that overage to Stripe, and no invoice carries it).
                Compare("overagePrices", string.Join(",", BillingCatalog.OveragePrices(plan, price).Select(o => o.LookupKey).Order(StringComparer.Ordinal)),
                    string.Join(",", subscription.MeteredItems().Select(m => m.Price.LookupKey ?? m.Price.Id).Order(StringComparer.Ordinal)));
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
