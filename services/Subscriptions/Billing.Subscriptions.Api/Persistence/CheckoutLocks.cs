using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Database;
using Npgsql;

namespace Billing.Subscriptions.Api.Persistence;

/// <summary>
/// The connections a checkout, a cancel, a resume or a plan change holds its user's lock on while it talks to Stripe
/// (expiring the previous session and creating the new one; reading the subscription, releasing or writing its schedule
/// and updating it): a pool of their own (<c>Subscriptions:CheckoutConcurrency</c>, 16), so that during a Stripe slowdown
/// waiting requests use up these and never the service's main pool, which the consumers, the grace watcher and every
/// other endpoint need. A request that finds none free within the connection timeout fails (503) and can be retried.
/// </summary>
public sealed class CheckoutLocks(IConfiguration configuration) : IAsyncDisposable
{
    private readonly NpgsqlDataSource _dataSource = DatabaseExtensions.OwnPool(configuration, "Subscriptions:CheckoutConcurrency", 16);

    /// <summary>How long a subscription change waits for another change of the same user before it answers 409.</summary>
    public static readonly TimeSpan ChangeWait = TimeSpan.FromSeconds(5);

    // One user's checkouts and changes queue here first (per replica), so that a burst of one user's requests waits
    // without a connection each; another user never waits in that queue.
    private readonly PerKeyQueue _users = new();

    /// <summary>
    /// Waits (up to <see cref="ChangeWait"/>) for, then holds, the lock on the user's subscription changes (cancel, resume,
    /// change) until the result is disposed: one user's changes run one at a time, across replicas (a PostgreSQL advisory
    /// lock), each on what Stripe says once the previous one is done. <see cref="ChangeLock.Busy"/> when another change of
    /// the user is still running; <see cref="ChangeLock.Unavailable"/> when no connection of this pool came free in time.
    /// </summary>
    public Task<(ChangeLock Outcome, Held? Held)> LockSubscriptionChangesAsync(string userId, CancellationToken ct) =>
        HoldAsync(userId, "subscription-changes:" + userId, ct);

    /// <summary>
    /// Queues a checkout behind the user's other checkouts and changes on this replica (up to <see cref="ChangeWait"/>),
    /// then holds a connection of this pool in a transaction whose lock waits give up after <see cref="ChangeWait"/> (the
    /// caller locks the user's checkout row in it). A burst of one user's checkouts waits without connections, so it
    /// cannot take the pool every other user's checkouts and changes need. Outcomes as for changes.
    /// </summary>
    public Task<(ChangeLock Outcome, Held? Held)> HoldCheckoutAsync(string userId, CancellationToken ct) => HoldAsync(userId, null, ct);

    private async Task<(ChangeLock Outcome, Held? Held)> HoldAsync(string userId, string? advisoryKey, CancellationToken ct)
    {
        if (await _users.EnterAsync(userId, ChangeWait, ct) is not { } turn)
        {
            return (ChangeLock.Busy, null);
        }
        // Whatever does not end in a held lock gives everything back here, once.
        NpgsqlConnection? connection = null;
        NpgsqlTransaction? tx = null;
        var held = false;
        try
        {
            try
            {
                connection = await _dataSource.OpenConnectionAsync(ct);
            }
            catch (NpgsqlException ex) when (ex.InnerException is TimeoutException)
            {
                return (ChangeLock.Unavailable, null);
            }
            tx = await connection.BeginTransactionAsync(ct);
            await using var command = new NpgsqlCommand(
                $"SET LOCAL lock_timeout = '{(int)ChangeWait.TotalMilliseconds}ms'" + (advisoryKey is null ? "" : "; SELECT pg_advisory_xact_lock(hashtextextended(@key, 0))"),
                connection, tx);
            if (advisoryKey is not null)
            {
                command.Parameters.AddWithValue("key", advisoryKey);
            }
            try
            {
                await command.ExecuteNonQueryAsync(ct);
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.LockNotAvailable)
            {
                return (ChangeLock.Busy, null);
            }
            held = true;
            return (ChangeLock.Held, new Held(connection, tx, turn));
        }
        finally
        {
            if (!held)
            {
                if (tx is not null)
                {
                    await tx.DisposeAsync();
                }
                if (connection is not null)
                {
                    await connection.DisposeAsync();
                }
                turn.Dispose();
            }
        }
    }

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    /// <summary>A held lock: its connection and transaction (ended, and the lock released, on disposal).</summary>
    public sealed class Held(NpgsqlConnection connection, NpgsqlTransaction tx, IDisposable turn) : IAsyncDisposable
    {
        public NpgsqlConnection Connection => connection;

        public NpgsqlTransaction Transaction => tx;

        public async ValueTask DisposeAsync()
        {
            try
            {
                await tx.DisposeAsync(); // rolls back: the lock goes with the transaction
                await connection.DisposeAsync();
            }
            finally
            {
                turn.Dispose();
            }
        }
    }
}

/// <summary>What <see cref="CheckoutLocks.LockSubscriptionChangesAsync"/> got.</summary>
public enum ChangeLock
{
    Held,
    Busy,
    Unavailable,
}
