using Stripe;

namespace Billing.ServiceDefaults.Stripe;

/// <summary>Whether Stripe has something to charge for a subscription (a trial can start without a card).</summary>
public static class PaymentMethods
{
    /// <summary>
    /// True when the subscription has a default payment method (or source), or its customer has one for invoices. Reads
    /// the customer only when the subscription has none.
    /// </summary>
    public static async Task<bool> OnFileAsync(Subscription subscription, IStripeClient stripe, StripeCalls calls, CancellationToken ct)
    {
        if (!string.IsNullOrEmpty(subscription.DefaultPaymentMethodId) || !string.IsNullOrEmpty(subscription.DefaultSourceId))
        {
            return true;
        }
        var customer = await calls.RunAsync(c => new CustomerService(stripe).GetAsync(subscription.CustomerId, cancellationToken: c), ct);
        return !string.IsNullOrEmpty(customer.InvoiceSettings?.DefaultPaymentMethodId) || !string.IsNullOrEmpty(customer.DefaultSourceId);
    }
}
