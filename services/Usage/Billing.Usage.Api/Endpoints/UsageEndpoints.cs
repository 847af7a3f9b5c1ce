using System.Globalization;
using Billing.ServiceDefaults;
using Billing.Usage.Api.Consuming;

namespace Billing.Usage.Api.Endpoints;

/// <summary>A user's own usage (GET /api/usage/me, /me/history) and entitlements (GET /api/entitlements/…).</summary>
public static class UsageEndpoints
{
    private const int MaxHistoryDays = 366;

    public static IEndpointRouteBuilder MapUsageApi(this IEndpointRouteBuilder app)
    {
        var usage = app.MapGroup("/api/usage").WithTags("Usage");
        usage.MapGet("/me", async (HttpContext http, UsageQueries queries, CancellationToken cancellationToken) =>
            {
                var userId = await SeeUserAsync(http, queries, cancellationToken);
                return TypedResults.Ok(await queries.UsageAsync(userId, cancellationToken));
            })
            .RequireAuthorization(BillingPolicies.User)
            .WithName("GetMyUsage")
            .WithSummary("The caller's meters in their current windows and token balance.");

        usage.MapGet("/me/history", async (HttpContext http, UsageQueries queries, TimeProvider clock, string? from, string? to, string? granularity,
                CancellationToken cancellationToken) =>
            {
                var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
                var now = clock.GetUtcNow();
                var end = Parse(to, "to", endOfDay: true, errors) ?? new DateTimeOffset(now.UtcDateTime.Date.AddDays(1), TimeSpan.Zero);
                var start = Parse(from, "from", endOfDay: false, errors) ?? end.AddDays(-30);
                if (granularity is not (null or "" or "day"))
                {
                    errors["granularity"] = ["Only \"day\" is supported."];
                }
                if (errors.Count == 0 && (start >= end || (end - start).TotalDays > MaxHistoryDays))
                {
                    errors["from"] = [$"Must be before \"to\", at most {MaxHistoryDays} days earlier."];
                }
                if (errors.Count > 0)
                {
                    return Problems.Validation(errors);
                }
                var userId = await SeeUserAsync(http, queries, cancellationToken);
                return TypedResults.Ok(await queries.HistoryAsync(userId, start, end, cancellationToken));
            })
            .RequireAuthorization(BillingPolicies.User)
            .WithName("GetMyUsageHistory")
            .WithSummary("Allowed usage per UTC day and meter.");

        var entitlements = app.MapGroup("/api/entitlements").WithTags("Entitlements");
        entitlements.MapGet("/me", async (HttpContext http, UsageQueries queries, CancellationToken cancellationToken) =>
            {
                var userId = await SeeUserAsync(http, queries, cancellationToken);
                return TypedResults.Ok(await queries.EntitlementsAsync(userId, cancellationToken));
            })
            .RequireAuthorization(BillingPolicies.User)
            .WithName("GetMyEntitlements")
            .WithSummary("The caller's plan, features, limits and meters.");

        entitlements.MapGet("/{userId}", async (string userId, UsageQueries queries, CancellationToken cancellationToken) =>
                userId.Length is 0 or > 200
                    ? Problems.Validation(new Dictionary<string, string[]> { ["userId"] = ["1 to 200 characters."] })
                    : TypedResults.Ok(await queries.EntitlementsAsync(userId, cancellationToken)))
            .RequireAuthorization(BillingPolicies.Usage)
            .WithName("GetEntitlements")
            .WithSummary("Any user's plan, features, limits and meters (scope billing.usage).");
        return app;
    }

    /// <summary>The caller's user id; remembers the groups of their own token on the way.</summary>
    private static async Task<string> SeeUserAsync(HttpContext http, UsageQueries queries, CancellationToken cancellationToken)
    {
        var userId = http.User.UserId() ?? throw new InvalidOperationException("The user policy guarantees a sub.");
        await queries.RememberGroupsAsync(userId, http.User.Groups(), cancellationToken);
        return userId;
    }

    private static readonly DateTimeOffset EarliestHistory = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset LatestHistory = new(9999, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static DateTimeOffset? Parse(string? value, string name, bool endOfDay, Dictionary<string, string[]> errors)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            return null;
        }
        DateTimeOffset? parsed = null;
        if (DateOnly.TryParseExact(value, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var day))
        {
            var start = new DateTimeOffset(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
            parsed = endOfDay && day < DateOnly.MaxValue ? start.AddDays(1) : start; // a date "to" includes that day
        }
        else if (DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var instant))
        {
            parsed = instant;
        }
        // Years 2000 to 9998: what lies outside cannot hold usage, and the range arithmetic around it must not overflow.
        if (parsed is { } p && p >= EarliestHistory && p <= LatestHistory)
        {
            return p;
        }
        errors[name] = ["An ISO-8601 date (2026-05-01) or time (2026-05-01T10:00:00Z), from the year 2000 to 9998."];
        return null;
    }
}
