namespace Billing.Usage.Core.Reservations;

/// <summary>The rules of reservations for streaming calls that need no database.</summary>
public static class ReservationRules
{
    /// <summary>A reservation lives this long unless the caller asks otherwise.</summary>
    public const int DefaultTtlSeconds = 300;

    /// <summary>The longest a reservation may hold part of a window.</summary>
    public const int MaxTtlSeconds = 3600;

    /// <summary>When a reservation made at <paramref name="now"/> expires.</summary>
    public static DateTimeOffset ExpiresAt(DateTimeOffset now, int? ttlSeconds) =>
        now.ToUniversalTime().AddSeconds(ttlSeconds ?? DefaultTtlSeconds);

    /// <summary>True for a ttl the API accepts.</summary>
    public static bool IsValidTtl(int ttlSeconds) => ttlSeconds is >= 1 and <= MaxTtlSeconds;
}
