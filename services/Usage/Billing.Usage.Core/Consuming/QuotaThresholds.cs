namespace Billing.Usage.Core.Consuming;

/// <summary>When a spend deserves QuotaLow (80 % used) or QuotaExhausted (nothing left).</summary>
public static class QuotaThresholds
{
    /// <summary>True when the spend moved usage from below 80 % of the limit to 80 % or more.</summary>
    public static bool CrossedLow(long usedBefore, long usedAfter, long limit) =>
        limit > 0 && usedBefore * 5 < limit * 4 && usedAfter * 5 >= limit * 4;

    /// <summary>True when the spend used up what was left.</summary>
    public static bool Exhausted(long usedBefore, long usedAfter, long limit) =>
        limit > 0 && usedBefore < limit && usedAfter >= limit;
}
