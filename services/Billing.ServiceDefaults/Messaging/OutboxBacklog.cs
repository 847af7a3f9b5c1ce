using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Dapper;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Billing.ServiceDefaults.Messaging;

/// <summary>
/// Samples the outbox (unsent rows and the age of the oldest) every <see cref="OutboxRelayOptions.PollInterval"/>
/// times five, for the <c>billing.outbox.backlog</c> and <c>billing.outbox.oldest_unsent_age</c> gauges. A backlog that
/// grows means RabbitMQ is unreachable or refusing messages: the state changes are safe, their events wait. Rows the
/// relay set aside (see <see cref="OutboxRelay"/>) stay in the backlog and its age until they are published or parked.
/// </summary>
public sealed class OutboxBacklogMonitor(NpgsqlDataSource dataSource, OutboxRelayOptions options, ILogger<OutboxBacklogMonitor> logger) : BackgroundService
{
    private static readonly ConcurrentDictionary<OutboxBacklogMonitor, byte> Monitors = new();
    private static readonly ObservableGauge<long> Backlog = BillingMetrics.CreateBacklogGauge(() =>
        Monitors.Keys.Where(m => m.Sampled).Select(m => new Measurement<long>(m.Unsent, new KeyValuePair<string, object?>("service", m.Service))).ToList());
    private static readonly ObservableGauge<double> Age = BillingMetrics.CreateBacklogAgeGauge(() =>
        Monitors.Keys.Where(m => m.Sampled).Select(m => new Measurement<double>(m.OldestAgeSeconds, new KeyValuePair<string, object?>("service", m.Service))).ToList());

    /// <summary>The service the gauges are tagged with.</summary>
    public string Service { get; private set; } = "";

    /// <summary>Unsent rows at the last sample.</summary>
    public long Unsent { get; private set; }

    /// <summary>Seconds since the oldest unsent row was written, at the last sample (0 when none).</summary>
    public double OldestAgeSeconds { get; private set; }

    /// <summary>True once a sample was taken.</summary>
    public bool Sampled { get; private set; }

    internal OutboxBacklogMonitor WithService(string service)
    {
        Service = service;
        return this;
    }

    /// <summary>Reads the backlog now.</summary>
    public async Task SampleAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleAsync<(long Count, double Age)>(new CommandDefinition(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM outbox WHERE sent_at IS NULL",
            cancellationToken: cancellationToken));
        Unsent = row.Count;
        OldestAgeSeconds = row.Age;
        Sampled = true;
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _ = Backlog;
        _ = Age;
        Monitors.TryAdd(this, 0);
        try
        {
            var interval = options.PollInterval * 5;
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    await SampleAsync(stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    logger.LogDebug(ex, "Could not sample the outbox backlog");
                }
                await Task.Delay(interval, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            Monitors.TryRemove(this, out _);
        }
    }
}
