using System.Collections.Concurrent;
using Microsoft.AspNetCore.Http;
using Stripe;

namespace Billing.ServiceDefaults.Stripe;

/// <summary>
/// Finds Stripe prices (plans and token packs) by the catalog's lookup keys (cached for 30 s; nobody copies price ids). Short,
/// because a catalog push that replaces a price archives the old one, and Stripe refuses an archived price in a checkout.
/// </summary>
public sealed class StripePrices(IStripeClient stripe, StripeCalls calls, TimeProvider clock)
{
    private static readonly TimeSpan Keep = TimeSpan.FromSeconds(30);
    private readonly ConcurrentDictionary<string, (string Id, DateTimeOffset At)> _cache = new(StringComparer.Ordinal);

    /// <summary>The active price id with this lookup key, or null when the catalog was not pushed to Stripe.</summary>
    public async Task<string?> FindAsync(string lookupKey, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (_cache.TryGetValue(lookupKey, out var hit) && now - hit.At < Keep)
        {
            return hit.Id;
        }
        var prices = await calls.RunAsync(c => new PriceService(stripe).ListAsync(new PriceListOptions { LookupKeys = [lookupKey], Active = true, Limit = 1 }, cancellationToken: c), ct);
        var price = prices.Data.FirstOrDefault();
        if (price is null)
        {
            return null;
        }
        _cache[lookupKey] = (price.Id, now);
        return price.Id;
    }

    /// <summary>
    /// Forgets every price looked up: Stripe refused a request that named one (<see cref="RefusedAPrice"/>), most likely
    /// because a catalog push archived it after it was cached. The caller answers the refusal; the next attempt looks the
    /// prices up again instead of meeting the same refusal until the cache entry is 30 s old.
    /// </summary>
    public void Forget() => _cache.Clear();

    /// <summary>True when Stripe refused a request because of a price it names (an archived one, say).</summary>
    public static bool RefusedAPrice(Exception ex) =>
        (ex is StripeUnavailableException { InnerException: { } inner } ? inner : ex) is StripeException
        {
            HttpStatusCode: System.Net.HttpStatusCode.BadRequest, StripeError.Param: { } param,
        } && param.Contains("price", StringComparison.Ordinal);

    /// <summary>503 <c>price_not_in_stripe</c>: the catalog has <paramref name="lookupKey"/>, Stripe has no active price under it.</summary>
    public static IResult NotInStripe(string lookupKey, string what = "price") =>
        Problems.Problem(503, "price_not_in_stripe", $"This {what} is not set up in Stripe yet.",
            $"No active Stripe price has lookup key \"{lookupKey}\": run 'deploy/billing catalog push'.");
}
