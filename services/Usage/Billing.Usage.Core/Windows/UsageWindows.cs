using Billing.Catalog;
using Billing.Usage.Core.Subscribers;

namespace Billing.Usage.Core.Windows;

/// <summary>
/// Where the current window of a meter allowance lies for a subscriber. A new window is simply a new counter row,
/// so nothing ever has to "reset" a counter: the window start is part of the counter's key.
/// </summary>
public static class UsageWindows
{
    public const string Day = "day";
    public const string Month = "month";
    public const string Period = "period";

    /// <summary>The window of <paramref name="allowance"/> that contains <paramref name="now"/> (or, for an unrenewed period, the last one).</summary>
    public static UsageWindow Current(MeterAllowance allowance, SubscriberState state, DateTimeOffset now) =>
        Current(allowance.Window, state, now);

    public static UsageWindow Current(string window, SubscriberState state, DateTimeOffset now)
    {
        now = now.ToUniversalTime();
        var subscribed = state.Access != SubscriberAccess.None;
        return window switch
        {
            Day => UtcDay(now),
            Month when subscribed && state.Anchor is { } anchor => AnchoredMonth(anchor, now),
            Month => CalendarMonth(now),
            // Renewal is what moves a period window on: past the end without a renewal it stays the last period.
            Period when subscribed && state.PeriodStart is { } start && state.PeriodEnd is { } end && end > start =>
                new UsageWindow(start.ToUniversalTime(), end.ToUniversalTime()),
            Period => subscribed && state.Anchor is { } a ? AnchoredMonth(a, now) : CalendarMonth(now),
            _ => throw new ArgumentOutOfRangeException(nameof(window), window, "a window is day, month or period"),
        };
    }

    /// <summary>UTC midnight to midnight.</summary>
    public static UsageWindow UtcDay(DateTimeOffset now)
    {
        var start = new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        return new UsageWindow(start, start.AddDays(1));
    }

    /// <summary>The UTC calendar month (free users, who have no subscription start to anchor on).</summary>
    public static UsageWindow CalendarMonth(DateTimeOffset now)
    {
        var utc = now.UtcDateTime;
        var start = new DateTimeOffset(utc.Year, utc.Month, 1, 0, 0, 0, TimeSpan.Zero);
        return new UsageWindow(start, start.AddMonths(1));
    }

    /// <summary>
    /// Monthly steps from the anchor, each computed as <c>anchor.AddMonths(k)</c> from the anchor itself, so an anchor on
    /// the 31st falls back to the last day of a short month and returns to the 31st afterwards. An instant before the
    /// anchor (our clock a little behind Stripe's, which set the subscription's start) is in the first window, never
    /// in a month before the subscription began: a spend counted there would be invisible from the next second on.
    /// </summary>
    public static UsageWindow AnchoredMonth(DateTimeOffset anchor, DateTimeOffset now)
    {
        anchor = anchor.ToUniversalTime();
        now = now.ToUniversalTime();
        var k = (now.Year - anchor.Year) * 12 + now.Month - anchor.Month;
        while (anchor.AddMonths(k) > now)
        {
            k--;
        }
        while (anchor.AddMonths(k + 1) <= now)
        {
            k++;
        }
        k = Math.Max(k, 0);
        return new UsageWindow(anchor.AddMonths(k), anchor.AddMonths(k + 1));
    }
}
