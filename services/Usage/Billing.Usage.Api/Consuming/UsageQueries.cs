using Billing.Catalog;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Core.Meters;
using Billing.Usage.Core.Subscribers;

namespace Billing.Usage.Api.Consuming;

public sealed record TokensView(long Balance);

/// <summary>GET /api/usage/me; <paramref name="Access"/>: <c>full</c>, <c>suspended</c> (payment past due beyond grace) or <c>none</c> (free plan).</summary>
public sealed record UsageView(IReadOnlyList<MeterUsage> Meters, TokensView Tokens, string Access);

/// <summary>
/// GET /api/entitlements/{userId} and /me. While <paramref name="Access"/> is <c>suspended</c> the plan stays the
/// subscribed one, but its features and limits are the free plan's and no meter has anything remaining.
/// </summary>
public sealed record EntitlementsView(string PlanId, IReadOnlyList<string> Features, IReadOnlyDictionary<string, long?> Limits,
    IReadOnlyList<MeterUsage> Meters, string Access);

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
        var (state, _, meters) = await MetersAsync(userId, cancellationToken);
        return new UsageView(meters, new TokensView(await reads.TokenBalanceAsync(userId, cancellationToken)), AccessOf(state));
    }

    public async Task<EntitlementsView> EntitlementsAsync(string userId, CancellationToken cancellationToken)
    {
        var (state, plan, meters) = await MetersAsync(userId, cancellationToken);
        var access = AccessOf(state);
        var granted = access == "suspended" ? catalog.Free : plan;
        return new EntitlementsView(plan.Id, granted.Features, granted.Limits, meters, access);
    }

    private string AccessOf(SubscriberState state) => state.AccessFor(catalog).ToName();

    public async Task<UsageHistoryView> HistoryAsync(string userId, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken)
    {
        var days = await reads.DailyAsync(userId, from, to, cancellationToken);
        return new UsageHistoryView(from.UtcDateTime, to.UtcDateTime, "day",
            days.Select(d => new DailyUsage(d.Day.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), d.Meter, d.Quantity)).ToList());
    }

    private async Task<(SubscriberState State, Plan Plan, IReadOnlyList<MeterUsage> Meters)> MetersAsync(string userId, CancellationToken cancellationToken)
    {
        var state = await subscribers.GetAsync(userId, cancellationToken);
        var now = clock.GetUtcNow();
        var windows = MeterUsages.Windows(catalog, state, now);
        var used = await reads.UsedAsync(userId, windows.Select(w => (w.Allowance.Meter, w.Window.Start)).ToList(), cancellationToken);
        return (state, state.EffectivePlan(catalog), MeterUsages.Describe(catalog, state, now, (meter, start) => used.GetValueOrDefault((meter, start))));
    }
}
