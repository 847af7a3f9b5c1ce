using Billing.Catalog;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Core.Meters;

namespace Billing.Usage.Api.Consuming;

public sealed record TokensView(long Balance);

/// <summary>GET /api/usage/me.</summary>
public sealed record UsageView(IReadOnlyList<MeterUsage> Meters, TokensView Tokens);

/// <summary>GET /api/entitlements/{userId} and /me.</summary>
public sealed record EntitlementsView(string PlanId, IReadOnlyList<string> Features, IReadOnlyDictionary<string, long?> Limits,
    IReadOnlyList<MeterUsage> Meters);

public sealed record DailyUsage(string Date, string Meter, long Quantity);

/// <summary>GET /api/usage/me/history.</summary>
public sealed record UsageHistoryView(DateTime From, DateTime To, string Granularity, IReadOnlyList<DailyUsage> Items);

/// <summary>The read side: a subscriber's meters in their current windows, their entitlements and history.</summary>
public sealed class UsageQueries(SubscriberStore subscribers, UsageReadStore reads, BillingCatalog catalog, TimeProvider clock)
{
    /// <summary>Remembers the groups on the user's own token (so consumes for them see the groups too).</summary>
    public Task RememberGroupsAsync(string userId, IReadOnlyList<string> groups, CancellationToken cancellationToken) =>
        subscribers.RememberGroupsAsync(userId, groups, clock.GetUtcNow(), cancellationToken);

    public async Task<UsageView> UsageAsync(string userId, CancellationToken cancellationToken)
    {
        var (_, meters) = await MetersAsync(userId, cancellationToken);
        return new UsageView(meters, new TokensView(await reads.TokenBalanceAsync(userId, cancellationToken)));
    }

    public async Task<EntitlementsView> EntitlementsAsync(string userId, CancellationToken cancellationToken)
    {
        var (plan, meters) = await MetersAsync(userId, cancellationToken);
        return new EntitlementsView(plan.Id, plan.Features, plan.Limits, meters);
    }

    public async Task<UsageHistoryView> HistoryAsync(string userId, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken)
    {
        var days = await reads.DailyAsync(userId, from, to, cancellationToken);
        return new UsageHistoryView(from.UtcDateTime, to.UtcDateTime, "day",
            days.Select(d => new DailyUsage(d.Day.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), d.Meter, d.Quantity)).ToList());
    }

    private async Task<(Plan Plan, IReadOnlyList<MeterUsage> Meters)> MetersAsync(string userId, CancellationToken cancellationToken)
    {
        var state = await subscribers.GetAsync(userId, cancellationToken);
        var now = clock.GetUtcNow();
        var windows = MeterUsages.Windows(catalog, state, now);
        var used = await reads.UsedAsync(userId, windows.Select(w => (w.Allowance.Meter, w.Window.Start)).ToList(), cancellationToken);
        return (state.EffectivePlan(catalog), MeterUsages.Describe(catalog, state, now, (meter, start) => used.GetValueOrDefault((meter, start))));
    }
}
