using Stripe;

namespace Billing.ServiceDefaults.Stripe;

/// <summary>What an invoice line bills, read the same way by Payments (a payment's description) and Subscriptions (the upcoming invoice).</summary>
public static class InvoiceLines
{
    /// <summary>Prefix of the Stripe products of metered overage prices (<c>catalog push</c>: <c>billing_overage_{event}</c>).</summary>
    public const string OverageProductPrefix = "billing_overage_";

    /// <summary>A proration: of a subscription item, or a pending proration invoice item.</summary>
    public static bool IsProration(InvoiceLineItem line) =>
        line.Parent?.SubscriptionItemDetails?.Proration == true || line.Parent?.InvoiceItemDetails?.Proration == true;

    /// <summary>Billed overage: a line of one of Billing's metered overage prices that is not a proration.</summary>
    public static bool IsOverage(InvoiceLineItem line) =>
        !IsProration(line) && line.Pricing?.PriceDetails?.Product?.StartsWith(OverageProductPrefix, StringComparison.Ordinal) == true;

    /// <summary>
    /// The period the invoice pays for: that of its line that bills a plan price for a whole period (no proration, no
    /// overage) and ends last; null when it has none (an upgrade's proration invoice, a final overage invoice).
    /// </summary>
    public static (DateTime Start, DateTime End)? PlanPeriod(Invoice invoice) =>
        (invoice.Lines?.Data ?? []).Where(l => !IsProration(l) && !IsOverage(l) && l.Period is not null)
            .OrderByDescending(l => l.Period.End).Select(l => ((DateTime Start, DateTime End)?)(l.Period.Start, l.Period.End)).FirstOrDefault();

    /// <summary>What the invoice bills for overage.</summary>
    public static long OverageAmount(Invoice invoice) => (invoice.Lines?.Data ?? []).Where(IsOverage).Sum(l => l.Amount);
}
