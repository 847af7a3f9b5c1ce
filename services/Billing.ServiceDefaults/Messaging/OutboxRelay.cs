using System.Diagnostics;
using System.Text.Json;
using Dapper;
using MassTransit;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Billing.ServiceDefaults.Messaging;

/// <summary>How the relay polls and batches.</summary>
public sealed class OutboxRelayOptions
{
    /// <summary>Rows published per transaction.</summary>
    public int BatchSize { get; set; } = 100;
    /// <summary>How long to wait for a NOTIFY before looking anyway.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(2);
    /// <summary>How long one publish may wait for the broker's confirmation.</summary>
    public TimeSpan PublishTimeout { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>Sent rows older than this are deleted.</summary>
    public TimeSpan KeepSent { get; set; } = TimeSpan.FromDays(7);
}

/// <summary>
/// Publishes the outbox's unsent rows in order, each with MessageId = row id, and marks them sent in the same
/// transaction that locked them (FOR UPDATE SKIP LOCKED, so replicas share the work). A crash between publish and
/// mark re-publishes the row with the same MessageId; the consumers' inbox makes that harmless. When RabbitMQ is
/// down, publishing fails, the rows stay unsent and the relay retries with back-off, in order. A row this process cannot
/// publish (its message type does not resolve here, its payload does not deserialise) is set aside in memory with its
/// error recorded, and the rows after it go on; a replica of a newer release may publish it, or an operator parks it.
/// </summary>
public sealed class OutboxRelay(NpgsqlDataSource dataSource, IBus bus, OutboxRelayOptions options, ILogger<OutboxRelay> logger) : BackgroundService
{
    private static readonly ActivitySource Source = new(BillingTelemetry.Prefix + ".Outbox");
    private DateTimeOffset _lastCleanup = DateTimeOffset.MinValue;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var failures = 0;
        NpgsqlConnection? listener = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                listener ??= await ListenAsync(stoppingToken);
                int published;
                do
                {
                    published = await PublishPendingAsync(stoppingToken);
                }
                while (published == options.BatchSize && !stoppingToken.IsCancellationRequested);
                failures = 0;
                await CleanupAsync(stoppingToken);
                // Wakes on the NOTIFY of a committed outbox write, or after the poll interval.
                await listener.WaitAsync(options.PollInterval, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                failures++;
                var delay = TimeSpan.FromMilliseconds(Math.Min(30_000, 250 * Math.Pow(2, Math.Min(failures, 7))));
                logger.LogWarning(ex, "Outbox relay failed ({Failures} in a row); retrying in {Delay}", failures, delay);
                if (listener is not null)
                {
                    await listener.DisposeAsync();
                    listener = null;
                }
                try
                {
                    await Task.Delay(delay, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }

        if (listener is not null)
        {
            await listener.DisposeAsync();
        }
    }

    private async Task<NpgsqlConnection> ListenAsync(CancellationToken cancellationToken)
    {
        var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var listen = new NpgsqlCommand($"LISTEN {Outbox.Channel}", connection);
        await listen.ExecuteNonQueryAsync(cancellationToken);
        return connection;
    }

    /// <summary>Publishes one batch of unsent rows; returns how many were published or set aside.</summary>
    public async Task<int> PublishPendingAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var rows = (await connection.QueryAsync<OutboxRow>(new CommandDefinition(
            """
            SELECT position AS Position, id AS Id, message_type AS MessageType, payload::text AS Payload, trace_parent AS TraceParent,
                   correlation_id AS CorrelationId
            FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL AND NOT (position = ANY(@SetAside))
            ORDER BY position LIMIT @Limit FOR UPDATE SKIP LOCKED
            """,
            new { Limit = options.BatchSize, SetAside = SetAside() }, transaction, cancellationToken: cancellationToken))).ToList();
        if (rows.Count == 0)
        {
            return 0;
        }

        var published = new List<long>(rows.Count);
        var parked = 0;
        Exception? failure = null;
        foreach (var row in rows)
        {
            (Type Type, object Message) resolved;
            try
            {
                resolved = Resolve(row);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // This process cannot publish the row, and waiting for it would hold back every later message of the
                // service: it is set aside here, in memory, and the rows after it go on. Not in the database: in a rolling
                // deployment a replica of the newer release knows a message type this one does not, and publishes it.
                // The row stays unsent (in the backlog gauges) with its error until someone publishes, fixes or parks it.
                parked++;
                lock (_setAside)
                {
                    _setAside.Add(row.Position);
                }
                await connection.ExecuteAsync(new CommandDefinition(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = @Error WHERE position = @Position",
                    new { Error = ex.Message, row.Position }, transaction, cancellationToken: cancellationToken));
                logger.LogError(ex, "Outbox message {Id} ({Type}) cannot be published by this process; set aside, the messages after it go on",
                    row.Id, row.MessageType);
                continue;
            }
            try
            {
                await PublishAsync(row, resolved.Type, resolved.Message, cancellationToken);
                published.Add(row.Position);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                failure = ex;
                await connection.ExecuteAsync(new CommandDefinition(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = @Error WHERE position = @Position",
                    new { Error = ex.Message, row.Position }, transaction, cancellationToken: cancellationToken));
                break; // keep order: stop at the first row that could not be published
            }
        }

        if (published.Count > 0)
        {
            await connection.ExecuteAsync(new CommandDefinition(
                "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE position = ANY(@Positions)",
                new { Positions = published.ToArray() }, transaction, cancellationToken: cancellationToken));
        }
        await transaction.CommitAsync(cancellationToken);

        if (failure is not null)
        {
            throw new OutboxPublishException($"Published {published.Count} of {rows.Count} outbox message(s); the rest wait.", failure);
        }
        return published.Count + parked;
    }

    private readonly HashSet<long> _setAside = [];

    private long[] SetAside()
    {
        lock (_setAside)
        {
            return [.. _setAside];
        }
    }

    private static (Type Type, object Message) Resolve(OutboxRow row)
    {
        var type = Type.GetType(row.MessageType, throwOnError: false)
            ?? throw new InvalidOperationException($"Unknown outbox message type '{row.MessageType}'.");
        var message = JsonSerializer.Deserialize(row.Payload, type, Outbox.Json)
            ?? throw new InvalidOperationException($"Outbox row {row.Id} has an empty payload.");
        return (type, message);
    }

    private async Task PublishAsync(OutboxRow row, Type type, object message, CancellationToken cancellationToken)
    {

        // Continue the trace of the request that wrote the row.
        using var activity = row.TraceParent is not null && ActivityContext.TryParse(row.TraceParent, null, out var parent)
            ? Source.StartActivity("outbox publish " + type.Name, ActivityKind.Producer, parent)
            : Source.StartActivity("outbox publish " + type.Name, ActivityKind.Producer);

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.PublishTimeout);
        await bus.Publish(message, type, context =>
        {
            context.MessageId = row.Id;
            if (row.CorrelationId is not null)
            {
                context.Headers.Set(CorrelationId.Header, row.CorrelationId);
            }
        }, timeout.Token);
    }

    private async Task CleanupAsync(CancellationToken cancellationToken)
    {
        if (DateTimeOffset.UtcNow - _lastCleanup < TimeSpan.FromHours(1))
        {
            return;
        }
        _lastCleanup = DateTimeOffset.UtcNow;
        await using var command = dataSource.CreateCommand(
            "DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)");
        command.Parameters.AddWithValue(options.KeepSent.TotalSeconds);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private sealed record OutboxRow(long Position, Guid Id, string MessageType, string Payload, string? TraceParent, string? CorrelationId);
}

/// <summary>Some outbox rows could not be published (the broker is down or refused them); they stay for the next try.</summary>
public sealed class OutboxPublishException(string message, Exception inner) : Exception(message, inner);
