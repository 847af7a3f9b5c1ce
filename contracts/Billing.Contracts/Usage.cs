namespace Billing.Contracts;

/// <summary>80 % of a meter's allowance in the current window is used. Published once per window and limit by Usage (an upgrade within the window announces the new limit too).</summary>
public sealed record QuotaLow
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Meter name, e.g. <c>ai.generation</c>.</summary>
    public required string Meter { get; init; }
    /// <summary>The window's allowance.</summary>
    public required long Limit { get; init; }
    /// <summary>Used in the window so far.</summary>
    public required long Used { get; init; }
    /// <summary>Start of the window.</summary>
    public required DateTimeOffset WindowStart { get; init; }
    /// <summary>When the window resets.</summary>
    public required DateTimeOffset ResetsAt { get; init; }
    /// <summary>When it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
}

/// <summary>Nothing is left of a meter's allowance in the current window. Published once per window and limit by Usage (an upgrade within the window announces the new limit too).</summary>
public sealed record QuotaExhausted
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Meter name.</summary>
    public required string Meter { get; init; }
    /// <summary>The window's allowance.</summary>
    public required long Limit { get; init; }
    /// <summary>Start of the window.</summary>
    public required DateTimeOffset WindowStart { get; init; }
    /// <summary>When the window resets.</summary>
    public required DateTimeOffset ResetsAt { get; init; }
    /// <summary>When it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
}
