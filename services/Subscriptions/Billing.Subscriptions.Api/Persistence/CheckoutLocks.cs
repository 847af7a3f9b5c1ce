using Billing.ServiceDefaults.Database;

namespace Billing.Subscriptions.Api.Persistence;

/// <summary>
/// The locks a checkout, a cancel, a resume or a plan change holds while it talks to Stripe (expiring the previous session
/// and creating the new one; reading the subscription, releasing or writing its schedule and updating it), on a pool of
/// their own (<c>Subscriptions:CheckoutConcurrency</c>, 16) that the consumers, the grace watcher and every other endpoint
/// never wait for; one user's requests queue per replica first (<see cref="UserLocks"/>).
/// </summary>
public sealed class CheckoutLocks(IConfiguration configuration) : IAsyncDisposable
{
    private readonly UserLocks _locks = new(configuration, "Subscriptions:CheckoutConcurrency");

    /// <summary>
    /// Holds the lock on the user's subscription changes (cancel, resume, change) until the result is disposed: one user's
    /// changes run one at a time, across replicas (a PostgreSQL advisory lock), each on what Stripe says once the previous
    /// one is done. <see cref="UserLock.Busy"/> when another change of the user is still running after 5 s.
    /// </summary>
    public Task<(UserLock Outcome, UserLocks.Held? Held)> LockSubscriptionChangesAsync(string userId, CancellationToken ct) =>
        _locks.HoldAsync(userId, "subscription-changes:" + userId, ct);

    /// <summary>A connection and transaction for a checkout, after the user's other checkouts and changes on this replica (the caller locks the user's checkout row in it).</summary>
    public Task<(UserLock Outcome, UserLocks.Held? Held)> HoldCheckoutAsync(string userId, CancellationToken ct) => _locks.HoldAsync(userId, null, ct);

    /// <summary>
    /// Holds the lock under which an archived price is made active for one call and archived again
    /// (<see cref="Stripe.RetiredPrices"/>): one such change at a time, across replicas.
    /// </summary>
    public Task<(UserLock Outcome, UserLocks.Held? Held)> HoldRetiredPricesAsync(CancellationToken ct) =>
        _locks.HoldAsync("retired-prices", "retired-prices", ct);

    public ValueTask DisposeAsync() => _locks.DisposeAsync();
}
