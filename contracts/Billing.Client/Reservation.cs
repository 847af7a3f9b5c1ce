namespace Billing.Client;

/// <summary>
/// A held part of a user's window for a call whose cost is known at the end. Commit what was actually used; a
/// reservation disposed without a commit is released (so an exception in the AI call gives the quota back):
/// <code>
/// await using var hold = await billing.ReserveAsync(userId, "ai.generation", 10);
/// var used = await RunTheModelAsync();
/// await hold.CommitAsync(used);
/// </code>
/// </summary>
public sealed class Reservation : IAsyncDisposable
{
    private readonly BillingClient _client;
    private int _settled;

    internal Reservation(BillingClient client, ReservationInfo info)
    {
        _client = client;
        Info = info;
    }

    /// <summary>What Billing answered to the reservation.</summary>
    public ReservationInfo Info { get; }

    /// <summary>Billing's id of the reservation.</summary>
    public string Id => Info.ReservationId;

    /// <summary>How much is held.</summary>
    public long Quantity => Info.Quantity;

    /// <summary>When Billing releases it by itself.</summary>
    public DateTimeOffset ExpiresAt => Info.ExpiresAt;

    /// <summary>True once committed or released (by this object).</summary>
    public bool IsSettled => Volatile.Read(ref _settled) != 0;

    /// <summary>Spends <paramref name="actual"/> (at most <see cref="Quantity"/>); the rest goes back to the window.</summary>
    public async Task<ReservationSettlement> CommitAsync(long actual, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(actual, Quantity);
        if (Interlocked.Exchange(ref _settled, 1) != 0)
        {
            throw new InvalidOperationException($"Reservation {Id} was already committed or released.");
        }
        try
        {
            return await _client.CommitReservationAsync(Id, actual, cancellationToken).ConfigureAwait(false);
        }
        catch (BillingUnavailableException)
        {
            // Not known to be committed: let DisposeAsync try a release (Billing answers 409 if the commit did land).
            Volatile.Write(ref _settled, 0);
            throw;
        }
    }

    /// <summary>Gives the whole reservation back to the window.</summary>
    public async Task<ReservationSettlement?> ReleaseAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _settled, 1) != 0)
        {
            return null;
        }
        return await _client.ReleaseReservationAsync(Id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Releases the reservation unless it was committed or released. Never throws: an unreleased one expires by itself.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await ReleaseAsync().ConfigureAwait(false);
        }
        catch (BillingApiException)
        {
            // Expired, already settled, or Billing unreachable: the reservation's TTL releases it anyway.
        }
    }
}
