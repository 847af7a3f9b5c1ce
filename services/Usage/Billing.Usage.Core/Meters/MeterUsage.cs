using Billing.Catalog;
using Billing.Usage.Core.Subscribers;
using Billing.Usage.Core.Windows;

namespace Billing.Usage.Core.Meters;

/// <summary>
/// One meter of GET /api/usage/me and the entitlements. <paramref name="Overage"/> says what happens past the limit
/// (<c>block</c>, <c>tokens</c>, <c>bill</c>: spends go on and each unit costs <paramref name="OverageUnitAmount"/> in the
/// plan price's minor unit), so a page does not show a billed meter as used up.
/// </summary>
public sealed record MeterUsage(string Meter, long? Limit, long Used, long? Remaining, string Window, DateTime ResetsAt, bool Unlimited,
    string Overage, decimal? OverageUnitAmount);

public static class MeterUsages
{
    /// <summary>The meters of the subscriber's plan with their current windows.</summary>
    public static IReadOnlyList<(MeterAllowance Allowance, UsageWindow Window)> Windows(BillingCatalog catalog, SubscriberState state, DateTimeOffset now) =>
        state.EffectivePlan(catalog).Meters.Select(m => (m, UsageWindows.Current(m, state, now))).ToList();

    /// <summary>The meters as GET /api/usage/me shows them; <paramref name="usedIn"/> reads a window's counter (0 when none).</summary>
    public static IReadOnlyList<MeterUsage> Describe(BillingCatalog catalog, SubscriberState state, DateTimeOffset now,
        Func<string, DateTimeOffset, long> usedIn)
    {
        var unlimitedGroup = catalog.IsUnlimited(state.Groups);
        return Windows(catalog, state, now).Select(x =>
        {
            var used = usedIn(x.Allowance.Meter, x.Window.Start);
            var unlimited = unlimitedGroup || x.Allowance.Limit is null;
            long? limit = unlimited ? null : x.Allowance.Limit;
            long? remaining = limit is { } l ? Math.Max(0, l - used) : null;
            return new MeterUsage(x.Allowance.Meter, limit, used, remaining, x.Allowance.Window, x.Window.End.UtcDateTime, unlimited,
                x.Allowance.Overage, x.Allowance.Overage == "bill" ? x.Allowance.OverageUnitAmount : null);
        }).ToList();
    }
}
