using Microsoft.Extensions.Configuration;
using Npgsql;

namespace Billing.ServiceDefaults.Database;

/// <summary>How <see cref="UserLocks.HoldAsync"/> ended.</summary>
public enum UserLock
{
    /// <summary>Held: the caller works in its transaction and disposes it.</summary>
    Held,

    /// <summary>Another request of the user held the queue or the lock for <see cref="UserLocks.Wait"/> (Stripe slow): 409.</summary>
    Busy,

    /// <summary>No connection of the pool came free in time: 503.</summary>
    Unavailable,
}

/// <summary>
/// Locks for requests that hold a user's lock while Stripe answers (checkouts, plan changes): a pool of their own on the
/// service's database (<paramref name="sizeSetting"/>, 16), so a Stripe slowdown uses up these and never the main pool;
/// one user's requests queue per replica before they take a connection, so a burst of one user's cannot take the pool from
/// everyone else; and lock waits in the database give up after <see cref="Wait"/>.
/// </summary>
public sealed class UserLocks(IConfiguration configuration, string sizeSetting) : IAsyncDisposable
{
    /// <summary>How long a request waits in the user's queue, then for a lock in the database, before <see cref="UserLock.Busy"/>.</summary>
    public static readonly TimeSpan Wait = TimeSpan.FromSeconds(5);

    private readonly NpgsqlDataSource _dataSource = DatabaseExtensions.OwnPool(configuration, sizeSetting, 16);

    private readonly PerKeyQueue _users = new();

    /// <summary>
    /// Waits for the user's turn on this replica, then holds a connection of this pool in a transaction whose lock waits
    /// give up after <see cref="Wait"/>, with the advisory lock <paramref name="advisoryKey"/> taken in it when one is given
    /// (across replicas). Disposing the result ends the transaction (and the lock) and passes the turn on.
    /// </summary>
    public async Task<(UserLock Outcome, Held? Held)> HoldAsync(string userId, string? advisoryKey, CancellationToken ct)
    {
        if (await _users.EnterAsync(userId, Wait, ct) is not { } turn)
        {
            return (UserLock.Busy, null);
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
                return (UserLock.Unavailable, null);
            }
            tx = await connection.BeginTransactionAsync(ct);
            await using var command = new NpgsqlCommand(
                $"SET LOCAL lock_timeout = '{(int)Wait.TotalMilliseconds}ms'" + (advisoryKey is null ? "" : "; SELECT pg_advisory_xact_lock(hashtextextended(@key, 0))"),
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
                return (UserLock.Busy, null);
            }
            held = true;
            return (UserLock.Held, new Held(connection, tx, turn));
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
                await tx.DisposeAsync(); // rolls back unless committed: the lock goes with the transaction
                await connection.DisposeAsync();
            }
            finally
            {
                turn.Dispose();
            }
        }
    }
}
