using Npgsql;

namespace Billing.Subscriptions.Api.Persistence;

/// <summary>
/// The connections a checkout holds its user's lock on while it talks to Stripe (expiring the previous session, creating
/// the new one): a pool of their own (<c>Subscriptions:CheckoutConcurrency</c>, 16), so that during a Stripe slowdown
/// waiting checkouts use up these and never the service's main pool, which the consumers, the grace watcher and every
/// other endpoint need. A checkout that finds none free within the connection timeout fails (503) and can be retried.
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

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();
}
