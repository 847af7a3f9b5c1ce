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

    private static async Task<IResult> VerifyAsync(NpgsqlDataSource db, IStripeClient stripe, StripeCalls calls, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var live = (await connection.QueryAsync<(string SubscriptionId, string UserId, string PriceId, string StripeStatus, DateTime PeriodEnd, bool CancelAtPeriodEnd)>(
            new CommandDefinition(
                """
                SELECT subscription_id, user_id, price_id, stripe_status, current_period_end, cancel_at_period_end
                FROM subscriptions WHERE stripe_status IN ('trialing', 'active', 'past_due', 'unpaid', 'paused') ORDER BY subscription_id
                """, cancellationToken: ct))).ToList();

        var differences = new List<Difference>();
        foreach (var s in live)
        {
            Subscription theirs;
            try
            {
                theirs = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(s.SubscriptionId, cancellationToken: c), ct);
            }
            catch (StripeException ex) when (ex.StripeError?.Code == "resource_missing")
            {
                differences.Add(new Difference(s.SubscriptionId, s.UserId, "exists", "yes", "no"));
                continue;
            }
            var item = theirs.Items.Data[0];
            void Compare(string field, string? mine, string? stripeValue)
            {
                if (!string.Equals(mine, stripeValue, StringComparison.Ordinal))
                {
                    differences.Add(new Difference(s.SubscriptionId, s.UserId, field, mine, stripeValue));
                }
            }
            Compare("status", s.StripeStatus, theirs.Status);
            Compare("price", s.PriceId, item.Price.Id);
            Compare("currentPeriodEnd", DateTime.SpecifyKind(s.PeriodEnd, DateTimeKind.Utc).ToString("O"), DateTime.SpecifyKind(item.CurrentPeriodEnd, DateTimeKind.Utc).ToString("O"));
            Compare("cancelAtPeriodEnd", s.CancelAtPeriodEnd.ToString(), theirs.CancelAtPeriodEnd.ToString());
        }
        return TypedResults.Ok(new { ok = differences.Count == 0, checkedCount = live.Count, differences });
    }
}
