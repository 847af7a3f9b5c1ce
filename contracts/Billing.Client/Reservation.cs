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
        ArgumentOutOfRangeException.ThrowIfNegative(actual);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(actual, Quantity);
        if (Interlocked.Exchange(ref _settled, 1) != 0)
        {
            throw new InvalidOperationException($"Reservation {Id} was already committed or released.");
        }
        try
        {
            return await _client.CommitReservationAsync(Id, actual, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (!Settled(ex))
        {
            // Not known to be committed (never sent, cancelled, no answer, refused as invalid): DisposeAsync still releases
            // it (Billing answers 409 if a commit did land).
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
        try
        {
            return await _client.ReleaseReservationAsync(Id, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (!Settled(ex))
        {
            Volatile.Write(ref _settled, 0); // not known to be released: a later release or DisposeAsync tries again
            throw;
        }
    }

    /// <summary>Releases the reservation unless it was committed or released. Never throws: an unreleased one expires by itself.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await ReleaseAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Expired, already settled, Billing unreachable, or the token provider failed: the reservation's TTL releases it.
        }
    }

    /// <summary>
    /// Billing answered that the reservation is settled or gone (404 not found or expired, 409 already committed or
    /// released): nothing is left to give back. Every other failure leaves it held.
    /// </summary>
    private static bool Settled(Exception error) =>
        error is BillingApiException { StatusCode: System.Net.HttpStatusCode.NotFound or System.Net.HttpStatusCode.Conflict }
            and not BillingUnavailableException;
}
