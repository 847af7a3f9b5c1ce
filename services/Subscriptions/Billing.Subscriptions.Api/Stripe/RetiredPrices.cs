using System.Net;
using Billing.ServiceDefaults.Stripe;
using Stripe;

namespace Billing.Subscriptions.Api.Stripe;

/// <summary>
/// Stripe refuses an archived price ("The price specified is inactive") in a subscription's items, a schedule's phases or
/// an invoice preview — also one a subscriber still pays: a grandfathered price a later <c>catalog push</c> replaced.
/// Where Billing must name such a price again (undoing a downgrade within the interval, the price paid for before an
/// upgrade's proration, the phase in force of a schedule that downgrades at the renewal), the price is made active for
/// the one call and archived again right after. It holds no lookup key any more, so no checkout can pick it meanwhile,
/// and a push archives it again should the second step fail.
/// </summary>
public static class RetiredPrices
{
    /// <summary>
    /// Runs <paramref name="call"/> (given the idempotency-key suffix to use); when Stripe refuses it (400) and some of
    /// <paramref name="priceIds"/> are archived, runs it once more, under another key, with those made active meanwhile.
    /// </summary>
    public static async Task<T> RunAsync<T>(IEnumerable<string?> priceIds, Func<string, Task<T>> call, IStripeClient stripe, StripeCalls calls,
        ILogger logger)
    {
        try
        {
            return await call("");
        }
        catch (StripeException ex) when (ex.HttpStatusCode == HttpStatusCode.BadRequest)
        {
            var prices = new PriceService(stripe);
            var retired = new List<string>();
            foreach (var id in priceIds.OfType<string>().Distinct())
            {
                if (!(await calls.RunAsync(c => prices.GetAsync(id, cancellationToken: c), CancellationToken.None)).Active)
                {
                    retired.Add(id);
                }
            }
            if (retired.Count == 0)
            {
                throw;
            }
            try
            {
                foreach (var id in retired)
                {
                    await SetActiveAsync(prices, calls, id, active: true);
                }
                return await call("-retired");
            }
            finally
            {
                foreach (var id in retired)
                {
                    try
                    {
                        await SetActiveAsync(prices, calls, id, active: false);
                    }
                    catch (Exception archive)
                    {
                        logger.LogError(archive, "Price {Price} was made active for a change of a subscription that still pays it and could not be "
                            + "archived again; the next `catalog push` archives it (it holds no lookup key, so no checkout sells it)", id);
                    }
                }
            }
        }
    }

    /// <inheritdoc cref="RunAsync{T}"/>
    public static Task RunAsync(IEnumerable<string?> priceIds, Func<string, Task> call, IStripeClient stripe, StripeCalls calls, ILogger logger) =>
        RunAsync(priceIds, async suffix => { await call(suffix); return true; }, stripe, calls, logger);

    private static Task SetActiveAsync(PriceService prices, StripeCalls calls, string id, bool active) =>
        calls.RunAsync(c => prices.UpdateAsync(id, new PriceUpdateOptions { Active = active }, cancellationToken: c), CancellationToken.None);
}
