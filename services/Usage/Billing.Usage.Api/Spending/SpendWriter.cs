using System.Threading.Channels;
using Billing.Contracts;
using Billing.ServiceDefaults.Messaging;
using Billing.Usage.Core.Consuming;
using Npgsql;
using NpgsqlTypes;

namespace Billing.Usage.Api.Spending;

/// <summary>One call of <c>usage_consume</c>: a consume decided on the subscriber's <see cref="Version"/>.</summary>
public sealed record SpendCommand
{
    public required string Key { get; init; }
    public required Guid ConsumptionId { get; init; }
    public required string UserId { get; init; }
    public required string Meter { get; init; }
    public required long Quantity { get; init; }
    /// <summary>The <c>usage_subjects.version</c> the decision was made on (-1: no row).</summary>
    public required long Version { get; init; }
    /// <summary>Spend from the window (false: record <see cref="Status"/> and <see cref="Answer"/> without spending).</summary>
    public required bool Spends { get; init; }
    public DateTimeOffset? WindowStart { get; init; }
    public DateTimeOffset? WindowEnd { get; init; }
    public long? Limit { get; init; }
    public ExhaustedAction Overage { get; init; }
    public string? EventName { get; init; }
    public string? Source { get; init; }
    public int Status { get; init; }
    /// <summary>The answer to record (no spend), or the 402 to record when a <c>block</c> window cannot cover the spend.</summary>
    public string? Answer { get; init; }
    public required DateTimeOffset Now { get; init; }
}

public enum SpendOutcome
{
    /// <summary>Decided and recorded now.</summary>
    Answered = 0,
    /// <summary>The key already had an answer: <see cref="SpendResult.Answer"/> is it.</summary>
    Stored = 1,
    /// <summary>The subscriber changed since the decision: read it again and decide again. Nothing was written.</summary>
    Stale = 2,
    /// <summary>The window cannot cover a <c>tokens</c> meter: the key is claimed and Wallet's debit decides.</summary>
    NeedsTokens = 3,
}

public sealed record SpendResult(SpendOutcome Outcome, int StatusCode, string? Answer, long? UsedBefore, long? UsedAfter,
    string? StoredUser, string? StoredMeter, long? StoredQuantity);

/// <summary>
/// Group commit for the hot path. Requests queue here; a writer takes up to <see cref="MaxBatch"/> waiting spends, sorts
/// them by user and meter (so two writers always lock counters in the same order), runs them as one
/// <see cref="NpgsqlBatch"/> of <c>usage_consume</c> calls in ONE transaction, and completes each request only after
/// that transaction has committed: one durable commit (one WAL flush) for many spends, every answer durable. A refused
/// spend is an answer, not an error, so it never affects the others; if the batch fails as a whole each spend is
/// retried alone, which is safe because every spend is idempotent by its key.
/// </summary>
public sealed class SpendWriter(NpgsqlDataSource dataSource, IConfiguration configuration, ILogger<SpendWriter> logger) : BackgroundService
{
    public const int MaxBatch = 64;

    private const string Sql =
        "SELECT outcome, status_code, answer, used_before, used_after, stored_user, stored_meter, stored_quantity " +
        "FROM usage_consume($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { AllowSynchronousContinuations = false });

    /// <summary>Queues a spend; the task completes once its transaction has committed.</summary>
    public Task<SpendResult> SubmitAsync(SpendCommand command)
    {
        var pending = new Pending(command);
        if (!_queue.Writer.TryWrite(pending))
        {
            throw new InvalidOperationException("The service is stopping; the spend was not taken.");
        }
        return pending.Completion.Task;
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var writers = Math.Clamp(configuration.GetValue("Usage:SpendWriters", 2), 1, 16);
        return Task.WhenAll(Enumerable.Range(0, writers).Select(_ => Task.Run(RunAsync, CancellationToken.None)));
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Stop taking spends, then finish the ones already queued: an accepted request is answered, never dropped.
        _queue.Writer.TryComplete();
        await base.StopAsync(cancellationToken);
    }

    private async Task RunAsync()
    {
        var batch = new List<Pending>(MaxBatch);
        while (await _queue.Reader.WaitToReadAsync())
        {
            while (batch.Count < MaxBatch && _queue.Reader.TryRead(out var next))
            {
                batch.Add(next);
            }
            if (batch.Count == 0)
            {
                continue;
            }
            batch.Sort(static (a, b) =>
            {
                var byUser = string.CompareOrdinal(a.Command.UserId, b.Command.UserId);
                return byUser != 0 ? byUser : string.CompareOrdinal(a.Command.Meter, b.Command.Meter);
            });
            await WriteAsync(batch);
            batch.Clear();
        }
    }

    private async Task WriteAsync(List<Pending> batch)
    {
        try
        {
            var results = await ExecuteAsync(batch);
            for (var i = 0; i < batch.Count; i++)
            {
                batch[i].Completion.TrySetResult(results[i]);
            }
            return;
        }
        catch (Exception ex) when (batch.Count > 1)
        {
            logger.LogWarning(ex, "A batch of {Count} spends failed; retrying each on its own", batch.Count);
        }
        catch (Exception ex)
        {
            batch[0].Completion.TrySetException(ex);
            return;
        }

        foreach (var one in batch)
        {
            try
            {
                one.Completion.TrySetResult((await ExecuteAsync([one]))[0]);
            }
            catch (Exception ex)
            {
                one.Completion.TrySetException(ex);
            }
        }
    }

    private async Task<SpendResult[]> ExecuteAsync(IReadOnlyList<Pending> batch)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        try
        {
            return await ExecuteAsync(connection, batch);
        }
        catch
        {
            // A batch that failed half-way through its results can leave the connection's protocol state behind:
            // never hand that connection to the next batch (the retries and everyone else get fresh ones).
            NpgsqlConnection.ClearPool(connection);
            throw;
        }
    }

    private async Task<SpendResult[]> ExecuteAsync(NpgsqlConnection connection, IReadOnlyList<Pending> batch)
    {
        await using var transaction = await connection.BeginTransactionAsync();
        var results = new SpendResult[batch.Count];
        await using (var command = new NpgsqlBatch(connection, transaction))
        {
            foreach (var pending in batch)
            {
                command.BatchCommands.Add(Call(pending.Command));
            }
            await using var reader = await command.ExecuteReaderAsync();
            for (var i = 0; i < batch.Count; i++)
            {
                if (!await reader.ReadAsync())
                {
                    throw new InvalidOperationException("usage_consume returned no row.");
                }
                results[i] = new SpendResult(
                    (SpendOutcome)reader.GetInt32(0),
                    reader.IsDBNull(1) ? 0 : reader.GetInt32(1),
                    reader.IsDBNull(2) ? null : reader.GetString(2),
                    reader.IsDBNull(3) ? null : reader.GetInt64(3),
                    reader.IsDBNull(4) ? null : reader.GetInt64(4),
                    reader.IsDBNull(5) ? null : reader.GetString(5),
                    reader.IsDBNull(6) ? null : reader.GetString(6),
                    reader.IsDBNull(7) ? null : reader.GetInt64(7));
                await reader.NextResultAsync();
            }
        }

        for (var i = 0; i < batch.Count; i++)
        {
            var c = batch[i].Command;
            if (results[i] is { Outcome: SpendOutcome.Answered, UsedBefore: { } before, UsedAfter: { } after } && c.Limit is { } limit
                && c.WindowStart is { } start && c.WindowEnd is { } end)
            {
                await QuotaAnnouncements.EnqueueAsync(connection, transaction, c.UserId, c.Meter, start, end, limit, before, after, c.Now);
            }
        }
        await transaction.CommitAsync();
        return results;
    }

    private static NpgsqlBatchCommand Call(SpendCommand c)
    {
        var call = new NpgsqlBatchCommand(Sql);
        var p = call.Parameters;
        p.Add(Param(NpgsqlDbType.Text, c.Key));
        p.Add(Param(NpgsqlDbType.Uuid, c.ConsumptionId));
        p.Add(Param(NpgsqlDbType.Text, c.UserId));
        p.Add(Param(NpgsqlDbType.Text, c.Meter));
        p.Add(Param(NpgsqlDbType.Bigint, c.Quantity));
        p.Add(Param(NpgsqlDbType.Bigint, c.Version));
        p.Add(Param(NpgsqlDbType.Integer, c.Spends ? 0 : 1));
        p.Add(Param(NpgsqlDbType.TimestampTz, c.WindowStart?.ToUniversalTime()));
        p.Add(Param(NpgsqlDbType.TimestampTz, c.WindowEnd?.ToUniversalTime()));
        p.Add(Param(NpgsqlDbType.Bigint, c.Limit));
        p.Add(Param(NpgsqlDbType.Integer, (int)c.Overage));
        p.Add(Param(NpgsqlDbType.Text, c.EventName));
        p.Add(Param(NpgsqlDbType.Text, c.Source));
        p.Add(Param(NpgsqlDbType.Integer, c.Status));
        p.Add(Param(NpgsqlDbType.Text, c.Answer));
        p.Add(Param(NpgsqlDbType.TimestampTz, c.Now.ToUniversalTime()));
        return call;
    }

    internal static NpgsqlParameter Param(NpgsqlDbType type, object? value) => new() { NpgsqlDbType = type, Value = value ?? DBNull.Value };

    private sealed class Pending(SpendCommand command)
    {
        public SpendCommand Command { get; } = command;
        public TaskCompletionSource<SpendResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>QuotaLow (80 %) and QuotaExhausted, once per window: the outbox row's id is derived from the window.</summary>
internal static class QuotaAnnouncements
{
    public static async Task EnqueueAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string userId, string meter,
        DateTimeOffset windowStart, DateTimeOffset windowEnd, long limit, long before, long after, DateTimeOffset now)
    {
        var cause = $"{userId}|{meter}|{windowStart.UtcDateTime:O}";
        if (QuotaThresholds.CrossedLow(before, after, limit))
        {
            await Outbox.EnqueueAsync(connection, transaction, new QuotaLow
            {
                UserId = userId,
                Meter = meter,
                Limit = limit,
                Used = after,
                WindowStart = windowStart.ToUniversalTime(),
                ResetsAt = windowEnd.ToUniversalTime(),
                OccurredAt = now.ToUniversalTime(),
            }, Outbox.MessageId(cause, nameof(QuotaLow)));
        }
        if (QuotaThresholds.Exhausted(before, after, limit))
        {
            await Outbox.EnqueueAsync(connection, transaction, new QuotaExhausted
            {
                UserId = userId,
                Meter = meter,
                Limit = limit,
                WindowStart = windowStart.ToUniversalTime(),
                ResetsAt = windowEnd.ToUniversalTime(),
                OccurredAt = now.ToUniversalTime(),
            }, Outbox.MessageId(cause, nameof(QuotaExhausted)));
        }
    }
}
