using System.Net;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Stripe;
using Billing.Subscriptions.Api.Persistence;
using Stripe;

namespace Billing.Subscriptions.Api.Stripe;

/// <summary>
/// Stripe refuses an archived price ("The price specified is inactive") in a subscription's items, a schedule's phases or
/// an invoice preview — also one a subscriber still pays: a grandfathered price a later <c>catalog push</c> replaced.
/// Where Billing must name such a price again (undoing a downgrade within the interval, the price paid for before an
/// upgrade's proration, the phases of a schedule that downgrades at the renewal), the price is made active for the one
/// call and archived again right after. It holds no lookup key any more, so no checkout can pick it meanwhile.
/// <para>
/// Only prices a subscription pays or has paid are ever made active — never one looked up from the catalog, whose cached
/// id may be the very price a push has just replaced (Stripe's refusal is then the safety net). These steps run one at a
/// time across replicas (a lock in the database), so one request's "archive again" never lands in the middle of another's.
/// </para>
/// </summary>
public sealed class RetiredPrices(IStripeClient stripe, StripeCalls calls, CheckoutLocks locks, ILogger<RetiredPrices> logger)
{
    /// <summary>
    /// Runs <paramref name="call"/> (given the idempotency-key suffix to use); when Stripe refuses it (400) and some of
    /// <paramref name="paidPriceIds"/> are archived, runs it once more, under another key, with those made active meanwhile.
    /// </summary>
    public async Task<T> RunAsync<T>(IEnumerable<string?> paidPriceIds, Func<string, Task<T>> call)
    {
        var named = paidPriceIds.OfType<string>().Distinct().ToList();
        try
        {
            return await call("");
        }
        catch (StripeException ex) when (ex.HttpStatusCode == HttpStatusCode.BadRequest && named.Count > 0)
        {
            var (outcome, held) = await locks.HoldRetiredPricesAsync(CancellationToken.None);
            await using var _ = held;
            if (outcome != UserLock.Held)
            {
                // Another change that names an archived price has held the lock for 5 s: this one changed nothing; 503.
                throw new StripeUnavailableException(
                    "Another change naming an archived price is in progress; nothing was changed. Try again in a moment.", ex);
            }
            if (await ArchivedAsync(named) is not { Count: > 0 } retired)
            {
                throw; // not an archived price's refusal
            }
            try
            {
                foreach (var id in retired)
                {
                    await SetActiveAsync(id, active: true);
                }
                return await call("-retired");
            }
            finally
            {
                foreach (var id in retired)
                {
                    try
                    {
                        await SetActiveAsync(id, active: false);
                    }
                    catch (Exception archive)
                    {
                        logger.LogError(archive, "Price {Price} was made active for a change of a subscription that pays it and could not be archived "
                            + "again: archive it in Stripe (it holds no lookup key, so no checkout sells it; a catalog push archives it while the "
                            + "catalog has a price of its plan and interval)", id);
                    }
                }
            }
        }
    }

    /// <inheritdoc cref="RunAsync{T}"/>
    public Task RunAsync(IEnumerable<string?> paidPriceIds, Func<string, Task> call) =>
        RunAsync(paidPriceIds, async suffix => { await call(suffix); return true; });

    /// <summary>Which of <paramref name="ids"/> are archived; none when Stripe cannot say (the original refusal stands).</summary>
    private async Task<List<string>?> ArchivedAsync(List<string> ids)
    {
        var prices = new PriceService(stripe);
        var archived = new List<string>();
        try
        {
            foreach (var id in ids)
            {
                if (!(await calls.RunAsync(c => prices.GetAsync(id, cancellationToken: c), CancellationToken.None)).Active)
                {
                    archived.Add(id);
                }
            }
        }
        catch (Exception ex)
        {
            logger.LogWarning(ex, "Could not read prices {Prices} after Stripe refused a change naming them", string.Join(", ", ids));
            return null;
        }
        return archived;
    }

    private Task SetActiveAsync(string id, bool active) =>
        calls.RunAsync(c => new PriceService(stripe).UpdateAsync(id, new PriceUpdateOptions { Active = active }, cancellationToken: c),
            CancellationToken.None);
}
