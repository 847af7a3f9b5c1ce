using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Database;
using Dapper;
using Npgsql;

namespace Billing.Wallet.Api.Persistence;

/// <summary>
/// The latest Checkout Session of each user, pack and pair of return URLs. A request for the same pack gets that session
/// back while it is open and at most <see cref="Reuse"/> old (a double click, a reload); otherwise — paid, expired, or
/// older — it gets a new one. Requests for the same pack run one at a time, so two clicks never make two sessions. The
/// lock is held on a connection of a pool of its own (<c>Wallet:CheckoutConcurrency</c>, 16) while Stripe answers, so a
/// Stripe slowdown never takes the main pool's connections from debits and returns, and one user's checkouts queue per
/// replica first (<see cref="UserLocks"/>).
/// </summary>
public sealed class PackCheckouts(IConfiguration configuration) : IAsyncDisposable
{
    private readonly UserLocks _locks = new(configuration, "Wallet:CheckoutConcurrency");

    public ValueTask DisposeAsync() => _locks.DisposeAsync();

    public static readonly TimeSpan Reuse = TimeSpan.FromMinutes(10);

    /// <summary>
    /// The session to send the user to: the latest one while Stripe says it is open and it is at most <see cref="Reuse"/>
    /// old; otherwise a new one that <paramref name="create"/> makes under the idempotency key it is given — after an
    /// older open session was expired through <paramref name="expire"/>, so that the two cannot both be paid. The key
    /// names the request's own parameters (<paramref name="requestHash"/>: price, what is sold, the email) and a sequence,
    /// so a retry after a crash between Stripe's answer and this record finds the same session, a changed request never
    /// meets Stripe's idempotency error, and an attempt Stripe answered with an error (<paramref name="stripeAnswered"/>;
    /// Stripe replays a key's first answer, errors too, for a day) is followed by a new key.
    /// </summary>
    public async Task<(CheckoutStart Outcome, string? SessionId, string? Url)> StartAsync(string userId, string packId, string urlsHash,
        string requestHash, DateTimeOffset now, Func<string, CancellationToken, Task<string>> statusOf, Func<string, CancellationToken, Task> expire,
        Func<string, CancellationToken, Task<(string SessionId, string Url)>> create, Func<Exception, bool> stripeAnswered, CancellationToken ct)
    {
        var (outcome, held) = await _locks.HoldAsync(userId, $"pack-checkout|{userId}|{packId}|{urlsHash}", ct);
        if (held is null)
        {
            // Another checkout of the user (or of this pack on another replica) held it for 5 s, or every connection of
            // this pool is waiting on Stripe.
            return (outcome == UserLock.Busy ? CheckoutStart.InProgress : CheckoutStart.Unavailable, null, null);
        }
        await using (held)
        {
            var (c, tx) = (held.Connection, held.Transaction);
            var args = new { userId, packId, urlsHash };
            var last = await c.QuerySingleOrDefaultAsync<LastCheckout>(new CommandDefinition(
                """
                SELECT session_id AS SessionId, url AS Url, sequence AS Sequence, created_at AS CreatedAt FROM wallet_checkouts
                WHERE user_id = @userId AND pack_id = @packId AND urls_hash = @urlsHash
                """, args, tx, cancellationToken: ct));
            if (last?.SessionId is { } previous && await statusOf(previous, ct) == "open")
            {
                if (last.CreatedAt > now.UtcDateTime - Reuse)
                {
                    return (CheckoutStart.Started, previous, last.Url);
                }
                await expire(previous, ct);
            }

            var sequence = (last?.Sequence ?? 0) + 1;
            string? sessionId = null, url = null;
            try
            {
                (sessionId, url) = await create($"billing-pack-checkout-{userId}-{packId}-{urlsHash}-{requestHash}-{sequence}", ct);
            }
            catch (Exception ex) when (stripeAnswered(ex))
            {
                await SaveAsync(); // the next attempt takes the next key
                throw;
            }
            await SaveAsync();
            return (CheckoutStart.Started, sessionId, url);

            async Task SaveAsync()
            {
                await c.ExecuteAsync(new CommandDefinition(
                    """
                    INSERT INTO wallet_checkouts (user_id, pack_id, urls_hash, session_id, url, sequence, created_at)
                    VALUES (@userId, @packId, @urlsHash, @sessionId, @url, @sequence, @now)
                    ON CONFLICT (user_id, pack_id, urls_hash) DO UPDATE
                        SET session_id = EXCLUDED.session_id, url = EXCLUDED.url, sequence = EXCLUDED.sequence, created_at = EXCLUDED.created_at
                    """, new { userId, packId, urlsHash, sessionId, url, sequence, now }, tx, cancellationToken: CancellationToken.None));
                await tx.CommitAsync(CancellationToken.None);
            }
        }
    }

    private sealed class LastCheckout
    {
        public string? SessionId { get; init; }
        public string? Url { get; init; }
        public int Sequence { get; init; }
        public DateTime CreatedAt { get; init; }
    }
}

/// <summary>How <see cref="PackCheckouts.StartAsync"/> ended.</summary>
public enum CheckoutStart
{
    /// <summary>A session to send the user to.</summary>
    Started,

    /// <summary>Another request for the same pack held its lock for 5 s (Stripe is slow): nothing was made.</summary>
    InProgress,

    /// <summary>No connection of the checkout pool came free in time: nothing was made.</summary>
    Unavailable,
}
