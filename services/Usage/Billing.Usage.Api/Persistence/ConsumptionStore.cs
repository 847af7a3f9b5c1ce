using Billing.Catalog;
using Billing.Contracts;
using Billing.ServiceDefaults.Messaging;
using Billing.Usage.Core.Consuming;
using Billing.Usage.Core.Subscribers;
using Billing.Usage.Core.Windows;
using Dapper;
using Npgsql;

namespace Billing.Usage.Api.Persistence;

/// <summary>A consumption already recorded under an idempotency key, with its first answer.</summary>
public sealed record StoredConsumption(string UserId, string Meter, long Quantity, int StatusCode, string Answer);

/// <summary>Everything a consume needs to decide, read in one round trip.</summary>
public sealed record ConsumeInputs(SubscriberState Subscriber, long TokenBalance, StoredConsumption? Existing);

/// <summary>
/// The hot path's SQL: the counters (<c>usage_counters</c>) and the idempotency records (<c>consumptions</c>). A spend
/// and its record are ONE statement in one transaction: the counter moves only when it stays within the limit, and
/// the record makes a second spend under the same key roll back.
/// </summary>
public sealed class ConsumptionStore(NpgsqlDataSource dataSource, BillingCatalog catalog)
{
    /// <summary>The subscriber, their token balance and any earlier consumption under the key.</summary>
    public async Task<ConsumeInputs> ReadInputsAsync(string userId, string idempotencyKey, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleAsync<InputsRow>(new CommandDefinition(
            $"""
            SELECT s.user_id IS NOT NULL AS Known, {SubscriberStore.Columns},
                   coalesce(b.balance, 0) AS TokenBalance,
                   c.user_id AS ExistingUserId, c.meter AS ExistingMeter, c.quantity AS ExistingQuantity,
                   c.status_code AS ExistingStatusCode, c.answer::text AS ExistingAnswer
            FROM (SELECT 1) AS one
            LEFT JOIN usage_subjects s ON s.user_id = @userId
            LEFT JOIN token_balances b ON b.user_id = @userId
            LEFT JOIN consumptions c ON c.idempotency_key = @idempotencyKey
            """,
            new { userId, idempotencyKey }, cancellationToken: cancellationToken));
        var subscriber = row.Known ? row.ToState() : SubscriberState.New(userId, catalog);
        var existing = row.ExistingUserId is null ? null
            : new StoredConsumption(row.ExistingUserId, row.ExistingMeter!, row.ExistingQuantity ?? 0, row.ExistingStatusCode ?? 0, row.ExistingAnswer!);
        return new ConsumeInputs(subscriber, row.TokenBalance, existing);
    }

    /// <summary>The consumption recorded under a key, or null.</summary>
    public async Task<StoredConsumption?> FindAsync(string idempotencyKey, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<StoredConsumption>(new CommandDefinition(
            """
            SELECT user_id AS UserId, meter AS Meter, quantity AS Quantity, status_code AS StatusCode, answer::text AS Answer
            FROM consumptions WHERE idempotency_key = @idempotencyKey
            """,
            new { idempotencyKey }, cancellationToken: cancellationToken));
    }

    /// <summary>Records an answer that spends nothing. Returns null when the key was taken first (then read the stored answer).</summary>
    public async Task<(int StatusCode, string Answer)?> RecordAsync(ConsumeRequest request, Guid consumptionId, bool allowed, string? source,
        int statusCode, string answer, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<SpendOutcome>(new CommandDefinition(
            """
            INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, created_at)
            VALUES (@IdempotencyKey, @ConsumptionId, @UserId, @Meter, @Quantity, @Allowed, @Source, @StatusCode, CAST(@Answer AS json), @Now)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING status_code AS StatusCode, answer::text AS Answer
            """,
            new
            {
                request.IdempotencyKey,
                ConsumptionId = consumptionId,
                request.UserId,
                request.Meter,
                request.Quantity,
                Allowed = allowed,
                Source = source,
                StatusCode = statusCode,
                Answer = answer,
                Now = now.ToUniversalTime(),
            },
            cancellationToken: cancellationToken));
        return row is null ? null : (row.StatusCode, row.Answer);
    }

    /// <summary>
    /// Spends <c>quantity</c> from the window's counter if it stays within <paramref name="limit"/> (null = no ceiling) and
    /// records the answer under the idempotency key, in one statement: <paramref name="allowedAnswer"/> (its
    /// <c>"remaining":null</c> filled in) or <paramref name="refusedAnswer"/>. When the spend crosses 80 % or uses the rest,
    /// QuotaLow / QuotaExhausted go into the outbox in the same transaction. Returns null when the key was taken by
    /// another request (nothing is spent then).
    /// </summary>
    public async Task<(int StatusCode, string Answer)?> SpendAsync(ConsumeRequest request, Guid consumptionId, UsageWindow window, long? limit,
        string source, string allowedAnswer, string refusedAnswer, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var outcome = await connection.QuerySingleOrDefaultAsync<SpendOutcome>(new CommandDefinition(
            """
            WITH spend AS (
                INSERT INTO usage_counters AS c (user_id, meter, window_start, window_end, used)
                SELECT @UserId, @Meter, @WindowStart, @WindowEnd, @Quantity
                WHERE @Limit::bigint IS NULL OR @Quantity <= @Limit::bigint
                ON CONFLICT (user_id, meter, window_start) DO UPDATE SET used = c.used + EXCLUDED.used
                WHERE @Limit::bigint IS NULL OR c.used + EXCLUDED.used <= @Limit::bigint
                RETURNING c.used
            ), outcome AS (
                SELECT (SELECT used FROM spend) AS used
            )
            INSERT INTO consumptions (idempotency_key, consumption_id, user_id, meter, quantity, allowed, source, status_code, answer, window_start, created_at)
            SELECT @IdempotencyKey, @ConsumptionId, @UserId, @Meter, @Quantity, o.used IS NOT NULL,
                   CASE WHEN o.used IS NOT NULL THEN @Source END,
                   CASE WHEN o.used IS NOT NULL THEN 200 ELSE 402 END,
                   CAST(CASE WHEN o.used IS NULL THEN @Refused
                             WHEN @Limit::bigint IS NULL THEN @Allowed
                             ELSE replace(@Allowed, '"remaining":null', '"remaining":' || (@Limit::bigint - o.used)::text) END AS json),
                   @WindowStart, @Now
            FROM outcome o
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING status_code AS StatusCode, answer::text AS Answer, (SELECT used FROM spend) AS UsedAfter
            """,
            new
            {
                request.UserId,
                request.Meter,
                request.Quantity,
                request.IdempotencyKey,
                ConsumptionId = consumptionId,
                WindowStart = window.Start.ToUniversalTime(),
                WindowEnd = window.End.ToUniversalTime(),
                Limit = limit,
                Source = source,
                Allowed = allowedAnswer,
                Refused = refusedAnswer,
                Now = now.ToUniversalTime(),
            },
            transaction, cancellationToken: cancellationToken));

        if (outcome is null)
        {
            // Another request under the same key committed first: undo this spend, answer with theirs.
            await transaction.RollbackAsync(cancellationToken);
            return null;
        }

        if (outcome.UsedAfter is { } after && limit is { } max)
        {
            await AnnounceThresholdsAsync(connection, transaction, request, window, max, after - request.Quantity, after, now, cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return (outcome.StatusCode, outcome.Answer);
    }

    private static async Task AnnounceThresholdsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, ConsumeRequest request,
        UsageWindow window, long limit, long before, long after, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var cause = $"{request.UserId}|{request.Meter}|{window.Start.UtcDateTime:O}";
        if (QuotaThresholds.CrossedLow(before, after, limit))
        {
            await Outbox.EnqueueAsync(connection, transaction, new QuotaLow
            {
                UserId = request.UserId,
                Meter = request.Meter,
                Limit = limit,
                Used = after,
                WindowStart = window.Start.ToUniversalTime(),
                ResetsAt = window.End.ToUniversalTime(),
                OccurredAt = now.ToUniversalTime(),
            }, Outbox.MessageId(cause, nameof(QuotaLow)), cancellationToken);
        }
        if (QuotaThresholds.Exhausted(before, after, limit))
        {
            await Outbox.EnqueueAsync(connection, transaction, new QuotaExhausted
            {
                UserId = request.UserId,
                Meter = request.Meter,
                Limit = limit,
                WindowStart = window.Start.ToUniversalTime(),
                ResetsAt = window.End.ToUniversalTime(),
                OccurredAt = now.ToUniversalTime(),
            }, Outbox.MessageId(cause, nameof(QuotaExhausted)), cancellationToken);
        }
    }

    private sealed class SpendOutcome
    {
        public int StatusCode { get; set; }
        public string Answer { get; set; } = "";
        public long? UsedAfter { get; set; }
    }

    private sealed class InputsRow
    {
        public bool Known { get; set; }
        public string? UserId { get; set; }
        public string? PlanId { get; set; }
        public string? SubscriptionId { get; set; }
        public string? Status { get; set; }
        public string? Access { get; set; }
        public DateTime? Anchor { get; set; }
        public DateTime? PeriodStart { get; set; }
        public DateTime? PeriodEnd { get; set; }
        public long? Sequence { get; set; }
        public DateTime? StatusOccurredAt { get; set; }
        public DateTime? SuspendedAt { get; set; }
        public string[]? Groups { get; set; }
        public long TokenBalance { get; set; }
        public string? ExistingUserId { get; set; }
        public string? ExistingMeter { get; set; }
        public long? ExistingQuantity { get; set; }
        public int? ExistingStatusCode { get; set; }
        public string? ExistingAnswer { get; set; }

        public SubscriberState ToState() => new SubscriberRow
        {
            UserId = UserId!,
            PlanId = PlanId!,
            SubscriptionId = SubscriptionId,
            Status = Status,
            Access = Access ?? "none",
            Anchor = Anchor,
            PeriodStart = PeriodStart,
            PeriodEnd = PeriodEnd,
            Sequence = Sequence ?? 0,
            StatusOccurredAt = StatusOccurredAt,
            SuspendedAt = SuspendedAt,
            Groups = Groups ?? [],
        }.ToState();
    }
}
