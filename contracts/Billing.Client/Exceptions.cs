using System.Net;

namespace Billing.Client;

/// <summary>Billing answered 402: the user may not spend. Catch a subclass for one code, or this for all.</summary>
public class BillingRefusedException(BillingRefusal refusal)
    : Exception($"Billing refused the spend: {refusal.Code}{(refusal.Meter is null ? "" : $" ({refusal.Meter})")}. {refusal.Detail}".TrimEnd())
{
    /// <summary>The full answer.</summary>
    public BillingRefusal Refusal { get; } = refusal;
    /// <summary>The stable code (<c>quota_exhausted</c>, <c>no_subscription</c>, <c>payment_past_due</c>, <c>insufficient_tokens</c>).</summary>
    public string Code => Refusal.Code;
    /// <summary>The meter asked for.</summary>
    public string? Meter => Refusal.Meter;
    /// <summary>The window's limit.</summary>
    public long? Limit => Refusal.Limit;
    /// <summary>When the window starts again.</summary>
    public DateTimeOffset? ResetsAt => Refusal.ResetsAt;
    /// <summary>True when a larger plan exists: show the upgrade.</summary>
    public bool Upgrade => Refusal.Upgrade;

    internal static BillingRefusedException For(BillingRefusal refusal) => refusal.Code switch
    {
        BillingRefusalCodes.QuotaExhausted => new QuotaExhaustedException(refusal),
        BillingRefusalCodes.NoSubscription => new NoSubscriptionException(refusal),
        BillingRefusalCodes.PaymentPastDue => new PaymentPastDueException(refusal),
        BillingRefusalCodes.InsufficientTokens => new InsufficientTokensException(refusal),
        _ => new BillingRefusedException(refusal),
    };
}

/// <summary>The stable codes of a 402.</summary>
public static class BillingRefusalCodes
{
    /// <summary>The window's allowance is used up.</summary>
    public const string QuotaExhausted = "quota_exhausted";
    /// <summary>The user's (free) plan does not include the meter.</summary>
    public const string NoSubscription = "no_subscription";
    /// <summary>Past due longer than the grace period.</summary>
    public const string PaymentPastDue = "payment_past_due";
    /// <summary>The window is used up and the wallet cannot pay for the spend.</summary>
    public const string InsufficientTokens = "insufficient_tokens";
}

/// <summary>402 <c>quota_exhausted</c>: wait for <see cref="BillingRefusedException.ResetsAt"/> or upgrade.</summary>
public sealed class QuotaExhaustedException(BillingRefusal refusal) : BillingRefusedException(refusal);

/// <summary>402 <c>no_subscription</c>: the user must subscribe.</summary>
public sealed class NoSubscriptionException(BillingRefusal refusal) : BillingRefusedException(refusal);

/// <summary>402 <c>payment_past_due</c>: the user must fix their payment method.</summary>
public sealed class PaymentPastDueException(BillingRefusal refusal) : BillingRefusedException(refusal);

/// <summary>402 <c>insufficient_tokens</c>: the user may buy a token pack or upgrade.</summary>
public sealed class InsufficientTokensException(BillingRefusal refusal) : BillingRefusedException(refusal)
{
    /// <summary>Tokens in the wallet.</summary>
    public long? Balance => Refusal.Balance;
    /// <summary>Tokens the spend would have cost.</summary>
    public long? Requested => Refusal.Requested;
}

/// <summary>Any other error answer (400 validation, 401/403, 404, 409 idempotency conflict, …) or 5xx after the retries.</summary>
public class BillingApiException(HttpStatusCode? statusCode, string? code, string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The HTTP status, or null when no answer came (connection error, timeout).</summary>
    public HttpStatusCode? StatusCode { get; } = statusCode;
    /// <summary>The problem's stable <c>code</c> (e.g. <c>validation</c>, <c>idempotency_conflict</c>, <c>reservation_expired</c>).</summary>
    public string? Code { get; } = code;
    /// <summary>
    /// The idempotency key a consume or a reservation was sent with (also one the client made up): retry with it, and a
    /// spend that did land counts once.
    /// </summary>
    public string? IdempotencyKey { get; internal set; }
}

/// <summary>
/// Billing could not be reached or kept failing (5xx, timeouts) after every retry. The call may or may not have landed:
/// retry a consume or a reservation with the same <see cref="BillingApiException.IdempotencyKey"/> so it counts once.
/// </summary>
public sealed class BillingUnavailableException(HttpStatusCode? statusCode, string? code, string message, Exception? inner = null)
    : BillingApiException(statusCode, code, message, inner);
