namespace Billing.StripeSimulator.Engine;

/// <summary>Billing periods the way Stripe counts them: calendar months from the anchor (the 31st becomes the last
/// day of shorter months and comes back in longer ones), years, weeks, days; <c>interval_count</c> multiplies.</summary>
public static class Calendar
{
    public static long Add(long anchor, string interval, int count, int times)
    {
        var start = DateTimeOffset.FromUnixTimeSeconds(anchor);
        var n = count * times;
        var result = interval switch
        {
            "day" => start.AddDays(n),
            "week" => start.AddDays(7 * n),
            "month" => start.AddMonths(n),
            "year" => start.AddYears(n),
            _ => throw new ArgumentOutOfRangeException(nameof(interval), interval, "unknown interval"),
        };
        return result.ToUnixTimeSeconds();
    }

    /// <summary>The first period boundary counted from <paramref name="anchor"/> that lies after <paramref name="after"/>.</summary>
    public static long NextBoundary(long anchor, string interval, int count, long after)
    {
        for (var k = 1; k < 100_000; k++)
        {
            var boundary = Add(anchor, interval, count, k);
            if (boundary > after)
            {
                return boundary;
            }
        }
        throw new InvalidOperationException("period out of range");
    }
}
