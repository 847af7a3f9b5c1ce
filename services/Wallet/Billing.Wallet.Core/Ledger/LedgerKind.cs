namespace Billing.Wallet.Core.Ledger;

/// <summary>The kinds of ledger entry (API.md "Wallet"): each change of a balance is exactly one of them.</summary>
public static class LedgerKind
{
    public const string Purchase = "purchase";
    public const string Debit = "debit";
    public const string Refund = "refund";
    public const string Grant = "grant";
    public const string Expiry = "expiry";
    public const string Adjustment = "adjustment";
    public const string Return = "return";
    public const string RefundReversal = "refund_reversal";
}
