using Stripe;
using Stripe.Billing;

namespace Billing.ServiceDefaults.Stripe;

/// <summary>Stripe's Billing Meters, read whole.</summary>
public static class StripeMeters
{
    /// <summary>Every Billing Meter of the account, active or not (all pages, with <see cref="StripeCalls"/>' retries).</summary>
    public static Task<List<Meter>> ListAsync(IStripeClient stripe, StripeCalls calls, CancellationToken ct) =>
        calls.RunAsync(async c =>
        {
            var meters = new List<Meter>();
            await foreach (var meter in new MeterService(stripe).ListAutoPagingAsync(new MeterListOptions { Limit = 100 }, cancellationToken: c))
            {
                meters.Add(meter);
            }
            return meters;
        }, ct);
}
