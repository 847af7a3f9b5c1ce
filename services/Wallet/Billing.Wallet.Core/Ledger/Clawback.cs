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
}
