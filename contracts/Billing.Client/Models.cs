using System.Text.Json.Serialization;

namespace Billing.Client;

/// <summary>How an allowed spend was paid for.</summary>
public static class ConsumeSources
{
    /// <summary>From the plan's allowance in the current window.</summary>
    public const string Quota = "quota";
    /// <summary>From purchased tokens (the window was used up and the meter's overage is <c>tokens</c>).</summary>
    public const string Tokens = "tokens";
    /// <summary>The user has unlimited access (an <c>unlimitedGroups</c> member); nothing was counted.</summary>
    public const string Unlimited = "unlimited";
    /// <summary>Billed as metered overage.</summary>
    public const string Overage = "overage";
}

/// <summary>The answer to an allowed consume (HTTP 200).</summary>
/// <param name="Allowed">Always true here; refusals are <see cref="BillingRefusedException"/> or <see cref="ConsumeOutcome.Refusal"/>.</param>
/// <param name="Source">One of <see cref="ConsumeSources"/>.</param>
/// <param name="Remaining">What is left in the window; null when unlimited.</param>
/// <param name="TokenBalance">Purchased tokens left.</param>
/// <param name="ConsumptionId">Billing's id of this spend (the same for a retried idempotency key).</param>
public sealed record ConsumeResult(bool Allowed, string Source, long? Remaining, long TokenBalance, string? ConsumptionId);

/// <summary>What a 402 says: why the user may not spend, and what would help.</summary>
/// <param name="Code"><c>quota_exhausted</c>, <c>no_subscription</c>, <c>payment_past_due</c> or <c>insufficient_tokens</c>.</param>
/// <param name="Meter">The meter asked for.</param>
/// <param name="Limit">The window's limit, when there is one.</param>
/// <param name="ResetsAt">When the window starts again.</param>
/// <param name="Upgrade">True when a plan with a larger allowance exists.</param>
/// <param name="Title">The problem's title, for people.</param>
/// <param name="Detail">The problem's detail, for people.</param>
/// <param name="Balance">Tokens in the wallet (<c>insufficient_tokens</c>).</param>
/// <param name="Requested">Tokens the spend would have cost (<c>insufficient_tokens</c>).</param>
public sealed record BillingRefusal(string Code, string? Meter, long? Limit, DateTimeOffset? ResetsAt, bool Upgrade, string? Title, string? Detail,
    long? Balance = null, long? Requested = null);

/// <summary>The result of <see cref="BillingClient.TryConsumeAsync"/>: allowed with a <see cref="Result"/>, or refused with a <see cref="Refusal"/>.</summary>
public sealed record ConsumeOutcome(ConsumeResult? Result, BillingRefusal? Refusal)
{
    /// <summary>True when the spend was allowed.</summary>
    [JsonIgnore]
    public bool Allowed => Result is not null;
}

/// <summary>
/// One meter of a user's usage or entitlements. <paramref name="Overage"/>: what happens past the limit (<c>block</c>,
/// <c>tokens</c>, or <c>bill</c>: spends go on and each unit costs <paramref name="OverageUnitAmount"/> in the plan
/// price's minor unit).
/// </summary>
public sealed record MeterUsage(string Meter, long? Limit, long Used, long? Remaining, string? Window, DateTimeOffset? ResetsAt, bool Unlimited,
    string? Overage = null, decimal? OverageUnitAmount = null);

/// <summary>The wallet part of <c>GET /api/usage/me</c>.</summary>
public sealed record TokenBalance(long Balance);

/// <summary>
/// <c>GET /api/usage/me</c>: the signed-in user's meters and token balance. <paramref name="Access"/>: <c>full</c>,
/// <c>none</c> (the free plan) or <c>suspended</c> (payment past due beyond the grace period: every consume is refused).
/// </summary>
public sealed record UsageSnapshot(IReadOnlyList<MeterUsage> Meters, TokenBalance? Tokens, string? Access = null)
{
    /// <summary>True while access is suspended for a payment past due: ask for a new payment method.</summary>
    [JsonIgnore]
    public bool Suspended => Access == "suspended";
}

/// <summary>
/// <c>GET /api/entitlements/{userId}</c>: plan, features, numeric limits (null = unlimited) and meters. While
/// <paramref name="Access"/> is <c>suspended</c> the plan stays the subscribed one, but the features and limits are the
/// free plan's and nothing remains.
/// </summary>
public sealed record Entitlements(string PlanId, IReadOnlyList<string> Features, IReadOnlyDictionary<string, long?> Limits, IReadOnlyList<MeterUsage> Meters,
    string? Access = null)
{
    /// <summary>True when the plan includes the feature (never while suspended: the free plan's features apply then).</summary>
    public bool Has(string feature) => Features.Contains(feature, StringComparer.Ordinal);

    /// <summary>True while access is suspended for a payment past due.</summary>
    [JsonIgnore]
    public bool Suspended => Access == "suspended";
}

/// <summary>
/// What <c>POST /api/usage/reservations</c> answered. A reservation paid with purchased tokens (<c>Source</c> "tokens")
/// also names the <paramref name="Tokens"/> debited and the wallet's <paramref name="TokenBalance"/> after the debit.
/// </summary>
public sealed record ReservationInfo(string ReservationId, DateTimeOffset ExpiresAt, string? Meter, long Quantity, string? Source, long? Remaining,
    long? Tokens = null, long? TokenBalance = null);

/// <summary>
/// What a commit or release answered: how much was spent and how much went back to the window; for a reservation paid
/// with tokens, the tokens spent and the tokens returned to the wallet.
/// </summary>
public sealed record ReservationSettlement(string ReservationId, long Committed, long Released, long? Remaining,
    long? TokensSpent = null, long? TokensReturned = null);
