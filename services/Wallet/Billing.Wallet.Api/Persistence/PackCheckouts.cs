using Dapper;
using Npgsql;

namespace Billing.Wallet.Api.Persistence;

/// <summary>
/// The latest Checkout Session of each user, pack and pair of return URLs. A request for the same pack gets that session
/// back while it is open and at most <see cref="Reuse"/> old (a double click, a reload); otherwise — paid, expired, or
/// older — it gets a new one. Requests for the same pack run one at a time, so two clicks never make two sessions. The
/// lock is held on a connection of a pool of its own (<c>Wallet:CheckoutConcurrency</c>, 16) while Stripe answers, so a
/// Stripe slowdown never takes the main pool's connections from debits and returns.
/// </summary>
public sealed class PackCheckouts(IConfiguration configuration) : IAsyncDisposable
{
    private readonly NpgsqlDataSource dataSource = new NpgsqlDataSourceBuilder(new NpgsqlConnectionStringBuilder(
        configuration.GetConnectionString("Database") ?? throw new InvalidOperationException("ConnectionStrings:Database is not set."))
    {
        MaxPoolSize = Math.Clamp(configuration.GetValue("Wallet:CheckoutConcurrency", 16), 1, 200),
        MinPoolSize = 0,
    }.ConnectionString).Build();

    public ValueTask DisposeAsync() => dataSource.DisposeAsync();

    public static readonly TimeSpan Reuse = TimeSpan.FromMinutes(10);

    /// <summary>
    /// The session to send the user to: the latest one if <paramref name="isOpen"/> says it still is, else one that
    /// <paramref name="create"/> makes under the idempotency key it is given (the same key again after a crash between
    /// Stripe's answer and this record, so a retry finds the same session in Stripe).
    /// </summary>
    public async Task<(string SessionId, string Url)> StartAsync(string userId, string packId, string urlsHash, DateTimeOffset now,
        Func<string, CancellationToken, Task<bool>> isOpen, Func<string, CancellationToken, Task<(string SessionId, string Url)>> create,
        CancellationToken ct)
    {
        await using var c = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await c.BeginTransactionAsync(ct);
        var args = new { userId, packId, urlsHash };
        await c.ExecuteAsync(new CommandDefinition(
            "SELECT pg_advisory_xact_lock(hashtextextended('pack-checkout|' || @userId || '|' || @packId || '|' || @urlsHash, 0))",
            args, tx, cancellationToken: ct));
        var last = await c.QuerySingleOrDefaultAsync<LastCheckout>(new CommandDefinition(
            """
            SELECT session_id AS SessionId, url AS Url, sequence AS Sequence, created_at AS CreatedAt FROM wallet_checkouts
            WHERE user_id = @userId AND pack_id = @packId AND urls_hash = @urlsHash
            """, args, tx, cancellationToken: ct));
        if (last is not null && last.CreatedAt > now.UtcDateTime - Reuse && await isOpen(last.SessionId, ct))
        {
            return (last.SessionId, last.Url);
        }

        var sequence = (last?.Sequence ?? 0) + 1;
        var (sessionId, url) = await create($"billing-pack-checkout-{userId}-{packId}-{urlsHash}-{sequence}", ct);
        await c.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO wallet_checkouts (user_id, pack_id, urls_hash, session_id, url, sequence, created_at)
            VALUES (@userId, @packId, @urlsHash, @sessionId, @url, @sequence, @now)
            ON CONFLICT (user_id, pack_id, urls_hash) DO UPDATE
                SET session_id = EXCLUDED.session_id, url = EXCLUDED.url, sequence = EXCLUDED.sequence, created_at = EXCLUDED.created_at
            """, new { userId, packId, urlsHash, sessionId, url, sequence, now }, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return (sessionId, url);
    }

    private sealed class LastCheckout
    {
        public string SessionId { get; init; } = "";
        public string Url { get; init; } = "";
        public int Sequence { get; init; }
        public DateTime CreatedAt { get; init; }
    }
}
