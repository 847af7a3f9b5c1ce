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

    /// <summary>
    /// The meters as GET /api/usage/me shows them, by the rules a consume is decided by: nothing remains while access is
    /// suspended (an unlimited group aside), and a billed meter blocks during a trial or while past due.
    /// <paramref name="usedIn"/> reads a window's counter (0 when none).
    /// </summary>
    public static IReadOnlyList<MeterUsage> Describe(BillingCatalog catalog, SubscriberState state, DateTimeOffset now,
        Func<string, DateTimeOffset, long> usedIn)
    {
        var unlimitedGroup = catalog.IsUnlimited(state.Groups);
        var suspended = state.AccessFor(catalog) == SubscriberAccess.Suspended;
        return Windows(catalog, state, now).Select(x =>
        {
            var used = usedIn(x.Allowance.Meter, x.Window.Start);
            var unlimited = unlimitedGroup || x.Allowance.Limit is null;
            long? limit = unlimited ? null : x.Allowance.Limit;
            long? remaining = limit is { } l ? (suspended ? 0 : Math.Max(0, l - used)) : null;
            var overage = x.Allowance.Overage == "bill" && state.Status is "trialing" or "past_due" ? "block" : x.Allowance.Overage;
            return new MeterUsage(x.Allowance.Meter, limit, used, remaining, x.Allowance.Window, x.Window.End.UtcDateTime, unlimited,
                overage, overage == "bill" ? x.Allowance.OverageUnitAmount : null);
        }).ToList();
    }
}
