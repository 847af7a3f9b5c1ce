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
    private readonly NpgsqlDataSource _dataSource = new NpgsqlDataSourceBuilder(new NpgsqlConnectionStringBuilder(
        configuration.GetConnectionString("Database") ?? throw new InvalidOperationException("ConnectionStrings:Database is not set."))
    {
        MaxPoolSize = Math.Clamp(configuration.GetValue("Subscriptions:CheckoutConcurrency", 16), 1, 200),
        MinPoolSize = 0,
    }.ConnectionString).Build();

    public ValueTask<NpgsqlConnection> OpenConnectionAsync(CancellationToken ct) => _dataSource.OpenConnectionAsync(ct);

    /// <summary>
    /// Waits for, then holds, the lock on the user's subscription changes (cancel, resume, change) until the result is
    /// disposed: one user's changes run one at a time, each on what Stripe says once the previous one is done.
    /// </summary>
    public async Task<IAsyncDisposable> LockSubscriptionChangesAsync(string userId, CancellationToken ct)
    {
        var connection = await _dataSource.OpenConnectionAsync(ct);
        try
        {
            var tx = await connection.BeginTransactionAsync(ct);
            await using (var command = new NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtextextended(@key, 0))", connection, tx))
            {
                command.Parameters.AddWithValue("key", "subscription-changes:" + userId);
                await command.ExecuteNonQueryAsync(ct);
            }
            return new Held(connection, tx);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    private sealed class Held(NpgsqlConnection connection, NpgsqlTransaction tx) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await tx.DisposeAsync(); // rolls back: the lock goes with the transaction
            await connection.DisposeAsync();
        }
    }

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();
}
