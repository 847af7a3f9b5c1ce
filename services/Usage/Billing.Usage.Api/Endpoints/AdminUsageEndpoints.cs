using Billing.ServiceDefaults;
using Billing.Usage.Api.Consuming;
using Billing.Usage.Api.Overage;
using Dapper;
using Npgsql;

namespace Billing.Usage.Api.Endpoints;

/// <summary>
/// <c>GET /api/admin/usage/verify</c> (admin; used by <c>deploy/billing verify</c>): the token flows between Usage and
/// Wallet that have not finished. Each is owed in the database and retried by the sweeper, so a few recent ones are
/// normal; old ones mean Wallet keeps refusing (or cannot be reached) and need a look.
/// </summary>
public static class AdminUsageEndpoints
{
    /// <summary>A return owed for longer than this is reported.</summary>
    public static readonly TimeSpan LateReturn = TimeSpan.FromMinutes(5);

    /// <summary>Billed overage not taken by Stripe for longer than this is reported (it is retried every minute at most).</summary>
    public static readonly TimeSpan LateOverage = TimeSpan.FromMinutes(30);

    public sealed record UsageVerification(bool Ok, long TokenReturnsOwed, long TokenReturnsOwedLate, DateTime? OldestReturnOwedSince,
        long TokenClaimsOpen, long TokenClaimsStuck, long ReservationClaimsStuck, long OverageUnreported, long OverageUnreportedLate,
        DateTime? OldestOverageSince, string? OverageLastError, DateTime CheckedAt);

    public static IEndpointRouteBuilder MapAdminUsageApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/admin/usage/verify", async (NpgsqlDataSource dataSource, TokenClaimExpiry claims, TimeProvider clock, CancellationToken ct) =>
            {
                var now = clock.GetUtcNow();
                await using var connection = await dataSource.OpenConnectionAsync(ct);
                var v = await connection.QuerySingleAsync<(long Owed, long Late, DateTime? Oldest, long Open, long Stuck, long ReservationsStuck,
                    long Overage, long OverageLate, DateTime? OverageOldest, string? OverageError)>(
                    new CommandDefinition(
                        """
                        SELECT (SELECT count(*) FROM reservations WHERE return_due),
                               (SELECT count(*) FROM reservations WHERE return_due AND settled_at < @late),
                               (SELECT min(settled_at) FROM reservations WHERE return_due),
                               (SELECT count(*) FROM consumptions WHERE status_code = 0),
                               (SELECT count(*) FROM consumptions WHERE status_code = 0 AND created_at < @stuck),
                               (SELECT count(*) FROM reservations WHERE status = 'claimed' AND expires_at < @reservationStuck),
                               (SELECT count(*) FROM usage_overage WHERE reported_at IS NULL),
                               (SELECT count(*) FROM usage_overage WHERE reported_at IS NULL AND occurred_at < @overageLate),
                               (SELECT min(occurred_at) FROM usage_overage WHERE reported_at IS NULL),
                               (SELECT last_error FROM usage_overage WHERE reported_at IS NULL AND last_error IS NOT NULL
                                ORDER BY occurred_at LIMIT 1)
                        """,
                        new
                        {
                            late = (now - LateReturn).UtcDateTime,
                            stuck = (now - 2 * claims.Timeout).UtcDateTime,
                            reservationStuck = (now - TimeSpan.FromMinutes(1)).UtcDateTime,
                            overageLate = (now - LateOverage).UtcDateTime,
                        }, cancellationToken: ct));
                return TypedResults.Ok(new UsageVerification(v.Late == 0 && v.Stuck == 0 && v.ReservationsStuck == 0 && v.OverageLate == 0,
                    v.Owed, v.Late, Utc(v.Oldest), v.Open, v.Stuck, v.ReservationsStuck, v.Overage, v.OverageLate, Utc(v.OverageOldest),
                    v.OverageError, now.UtcDateTime));
            })
            .RequireAuthorization(BillingPolicies.Admin)
            .WithTags("Admin")
            .WithName("VerifyUsage")
            .WithSummary("Token returns owed to wallets, token claims not finished and billed overage Stripe has not taken: ok when none is late.");

        app.MapGet("/api/admin/usage/overage-check", async (IServiceProvider services, DateTimeOffset? from, DateTimeOffset? to, string? userId, int? limit,
                CancellationToken ct) =>
            {
                if (services.GetService<OverageCheck>() is not { } check)
                {
                    return Problems.Problem(StatusCodes.Status503ServiceUnavailable, "stripe_unavailable", "Stripe is not configured",
                        "This Usage has no Stripe key (STRIPE_SECRET_KEY), so it reports no overage and cannot ask Stripe's meters.");
                }
                var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
                var (start, end, rangeError) = check.Range(from, to);
                if (rangeError is not null)
                {
                    errors["from"] = [rangeError];
                }
                if (limit is < 1 or > OverageCheck.MaxLimit)
                {
                    errors["limit"] = [$"1 to {OverageCheck.MaxLimit}."];
                }
                if (userId is { Length: 0 or > 200 })
                {
                    errors["userId"] = ["1 to 200 characters."];
                }
                return errors.Count > 0
                    ? Problems.Validation(errors)
                    : TypedResults.Ok(await check.RunAsync(start, end, userId, limit ?? 200, ct));
            })
            .RequireAuthorization(BillingPolicies.Admin)
            .WithTags("Admin")
            .Produces<OverageCheck.OverageCheckResult>()
            .WithName("CheckOverage")
            .WithSummary("Billed overage Usage reported against what Stripe's meters counted, per customer and meter: ok when every pair matches.");
        return app;
    }

    private static DateTime? Utc(DateTime? at) => at is { } a ? DateTime.SpecifyKind(a, DateTimeKind.Utc) : null;
}
