namespace Billing.Wallet.Core.Ledger;

/// <summary>How many of a pack's tokens a refund takes back.</summary>
public static class Clawback
{
    /// <summary>
    /// The tokens that the refunds of a pack call for in total: its whole pack when fully refunded, otherwise the refunded
    /// share of the amount paid, rounded down (the user keeps a partial token). Refunds are cumulative, so the caller
    /// takes back only what this adds to what earlier refunds already called for.
    /// </summary>
    public static long TargetTokens(long packTokens, long amountPaid, long amountRefunded, bool fullyRefunded)
    {
        if (packTokens <= 0 || amountRefunded <= 0)
        {
            return 0;
        }
        if (fullyRefunded || amountPaid <= 0 || amountRefunded >= amountPaid)
        {
            return packTokens;
        }
        return (long)((Int128)packTokens * amountRefunded / amountPaid);
    }

    /// <summary>
    /// Splits a claw-back of <paramref name="take"/> tokens between the never-expiring pool and expiring lots so the lots
    /// never hold more than the balance: the refunded pack's own lot first, then the never-expiring pool, then other lots.
    /// Returns the tokens to take from lots other than the pack's own.
    /// </summary>
    public static long FromOtherLots(long take, long balance, long lotsTotal, long takenFromOwnLot)
    {
        var pool = Math.Max(0, balance - lotsTotal);
        return Math.Max(0, take - takenFromOwnLot - pool);
    }

    /// <summary>A chargeback that stands calls for the whole pack: while it is open, and when it was lost.</summary>
    public static bool DisputeStands(string? status) => status is DisputeOpen or "lost";

    /// <summary>The status a chargeback message of <paramref name="incoming"/> leaves: opened only once, closed only once (a late
    /// "opened" never reopens a closed one).</summary>
    public static string? NextDisputeStatus(string? current, string incoming) =>
        (current, incoming) switch
        {
            (null, InquiryClosed) => null, // an inquiry that ended: it never took the money, and a chargeback may still come
            (null, _) => incoming,
            (DisputeOpen, not DisputeOpen) => incoming,
            _ => current,
        };

    /// <summary>The status of a chargeback that has not closed yet.</summary>
    public const string DisputeOpen = "open";

    /// <summary>Stripe's status of an inquiry (<c>warning_*</c>) that closed without becoming a chargeback.</summary>
    public const string InquiryClosed = "warning_closed";
}

/// <summary>The state of a pack's refunds, as one <c>PaymentRefunded</c> gives it.</summary>
/// <param name="Undone">Refunds of the charge that failed or were canceled (only grows).</param>
/// <param name="AmountRefunded">What is refunded now.</param>
/// <param name="AmountPaid">The payment's amount.</param>
/// <param name="Fully">The whole payment is refunded.</param>
public sealed record RefundState(int Undone, long AmountRefunded, long AmountPaid, bool Fully);

/// <summary>
/// A change of a pack's payment that moves its claw-back: a refund's new state (<see cref="Refund"/>), or a chargeback
/// opened (<see cref="DisputeStatus"/> <c>open</c>) or closed (how it ended).
/// </summary>
public sealed record PackPaymentChange(string UserId, string PaymentId, string? PaymentIntentId, string ChargeId, string? StripeEventId,
    RefundState? Refund, string? DisputeStatus, string Describe)
{
    /// <summary>What changed, for messages.</summary>
    public string What => Refund is null ? "Chargeback" : "Refund";
}
