using Billing.Catalog;
using Billing.Usage.Core.Windows;

namespace Billing.Usage.Core.Consuming;

/// <summary>What to do with a consume before anything is spent.</summary>
public abstract record ConsumeDecision
{
    private ConsumeDecision()
    {
    }

    /// <summary>Allowed without touching a counter (a member of an unlimited group); still recorded.</summary>
    public sealed record AllowWithoutSpending(string Source) : ConsumeDecision;

    /// <summary>Refused before spending: <c>no_subscription</c> or <c>payment_past_due</c>.</summary>
    public sealed record Refuse(string Code, string Title, string Detail) : ConsumeDecision;

    /// <summary>
    /// Spend atomically from the window's counter. <see cref="Limit"/> null is an unlimited allowance: it is counted
    /// (so usage shows) but never refused.
    /// </summary>
    public sealed record Spend(MeterAllowance Allowance, UsageWindow Window, long? Limit) : ConsumeDecision;
}

/// <summary>What happens when the window's allowance cannot cover a spend (the meter's <c>overage</c>).</summary>
public enum ExhaustedAction
{
    /// <summary>402 <c>quota_exhausted</c>.</summary>
    Block,
    /// <summary>
    /// Purchased tokens pay for the whole spend (<c>quantity × tokensPerUnit</c>) through Wallet's debit; a spend is never
    /// split between the window and tokens, so a refused debit leaves the window exactly as it was.
    /// </summary>
    Tokens,
    /// <summary>Allowed past the limit; the units beyond it are billed overage (Stripe Billing Meter events).</summary>
    Bill,
}
