namespace Billing.Contracts;

/// <summary>Limits every service applies to token amounts.</summary>
public static class TokenLimits
{
    /// <summary>The most tokens one Wallet operation (a debit, a grant, a return) may move: 10^12.</summary>
    public const long MaxPerOperation = 1_000_000_000_000;
}

/// <summary>Tokens were added to a user's wallet (a purchase or a grant). Published by Wallet.</summary>
public sealed record TokensGranted
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Tokens added.</summary>
    public required long Amount { get; init; }
    /// <summary>Balance after the grant.</summary>
    public required long BalanceAfter { get; init; }
    /// <summary><c>purchase</c>, <c>grant</c> or <c>adjustment</c> (an admin's correction).</summary>
    public required string Kind { get; init; }
    /// <summary>What caused it: a checkout session id, a grant's idempotency key.</summary>
    public required string Reference { get; init; }
    /// <summary>When it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event behind it, if any.</summary>
    public string? StripeEventId { get; init; }
}

/// <summary>Tokens were taken back after a refund, or by an admin's negative adjustment. Published by Wallet.</summary>
public sealed record TokensClawedBack
{
    /// <summary>Billing's user id.</summary>
    public required string UserId { get; init; }
    /// <summary>Tokens the refund called for.</summary>
    public required long Requested { get; init; }
    /// <summary>Tokens actually taken (at most the balance).</summary>
    public required long Amount { get; init; }
    /// <summary>What could not be taken because it was already spent.</summary>
    public required long Shortfall { get; init; }
    /// <summary>Balance after the claw-back.</summary>
    public required long BalanceAfter { get; init; }
    /// <summary>The refund or charge it follows from.</summary>
    public required string Reference { get; init; }
    /// <summary>When it happened.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
    /// <summary>The Stripe event behind it, if any.</summary>
    public string? StripeEventId { get; init; }
}
