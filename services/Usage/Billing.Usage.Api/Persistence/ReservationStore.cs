using Billing.Usage.Api.Spending;
using Dapper;
using Npgsql;
using NpgsqlTypes;

namespace Billing.Usage.Api.Persistence;

/// <summary>One call of <c>usage_reserve</c> (the fields mean what they mean in <see cref="SpendCommand"/>).</summary>
public sealed record ReserveCommand
{
    public required string Key { get; init; }
    public required Guid ReservationId { get; init; }
    public required string UserId { get; init; }
    public required string Meter { get; init; }
    public required long Quantity { get; init; }
    public required long Version { get; init; }
    /// <summary>0 counts against the window, 1 allows without counting (unlimited groups), 2 records <see cref="Refusal"/>.</summary>
    public required int Mode { get; init; }
    public DateTimeOffset? WindowStart { get; init; }
    public DateTimeOffset? WindowEnd { get; init; }
    public long? Limit { get; init; }
    public int Overage { get; init; }
    public string? EventName { get; init; }
    public string? Refusal { get; init; }
    public required DateTimeOffset ExpiresAt { get; init; }
    public required DateTimeOffset Now { get; init; }
}

/// <summary>The outcome of a commit, release or expiry: <c>ok</c>, <c>not_found</c>, <c>expired</c>, <c>committed</c>, <c>released</c>, <c>too_much</c>, <c>not_due</c>.</summary>
public sealed record Settlement(string Outcome, string? Answer);

/// <summary>The <c>reservations</c> table, through its functions: each reserve and each settlement is one statement.</summary>
public sealed class ReservationStore(NpgsqlDataSource dataSource)
{
    /// <summary>Reserves in one transaction with the QuotaLow / QuotaExhausted it causes.</summary>
    public async Task<SpendResult> ReserveAsync(ReserveCommand c, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        SpendResult result;
        await using (var command = new NpgsqlCommand(
            "SELECT outcome, status_code, answer, used_before, used_after, stored_user, stored_meter, stored_quantity " +
            "FROM usage_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)", connection, transaction))
        {
            var p = command.Parameters;
            p.Add(SpendWriter.Param(NpgsqlDbType.Text, c.Key));
            p.Add(SpendWriter.Param(NpgsqlDbType.Uuid, c.ReservationId));
            p.Add(SpendWriter.Param(NpgsqlDbType.Text, c.UserId));
            p.Add(SpendWriter.Param(NpgsqlDbType.Text, c.Meter));
            p.Add(SpendWriter.Param(NpgsqlDbType.Bigint, c.Quantity));
            p.Add(SpendWriter.Param(NpgsqlDbType.Bigint, c.Version));
            p.Add(SpendWriter.Param(NpgsqlDbType.Integer, c.Mode));
            p.Add(SpendWriter.Param(NpgsqlDbType.TimestampTz, c.WindowStart?.ToUniversalTime()));
            p.Add(SpendWriter.Param(NpgsqlDbType.TimestampTz, c.WindowEnd?.ToUniversalTime()));
            p.Add(SpendWriter.Param(NpgsqlDbType.Bigint, c.Limit));
            p.Add(SpendWriter.Param(NpgsqlDbType.Integer, c.Overage));
            p.Add(SpendWriter.Param(NpgsqlDbType.Text, c.EventName));
            p.Add(SpendWriter.Param(NpgsqlDbType.Text, c.Refusal));
            p.Add(SpendWriter.Param(NpgsqlDbType.TimestampTz, c.ExpiresAt.ToUniversalTime()));
            p.Add(SpendWriter.Param(NpgsqlDbType.TimestampTz, c.Now.ToUniversalTime()));
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            result = new SpendResult((SpendOutcome)reader.GetInt32(0),
                reader.IsDBNull(1) ? 0 : reader.GetInt32(1),
                reader.IsDBNull(2) ? null : reader.GetString(2),
                reader.IsDBNull(3) ? null : reader.GetInt64(3),
                reader.IsDBNull(4) ? null : reader.GetInt64(4),
                reader.IsDBNull(5) ? null : reader.GetString(5),
                reader.IsDBNull(6) ? null : reader.GetString(6),
                reader.IsDBNull(7) ? null : reader.GetInt64(7));
        }
        if (result is { Outcome: SpendOutcome.Answered, UsedBefore: { } before, UsedAfter: { } after } && c.Limit is { } limit
            && c.WindowStart is { } start && c.WindowEnd is { } end)
        {
            await QuotaAnnouncements.EnqueueAsync(connection, transaction, c.UserId, c.Meter, start, end, limit, before, after, c.Now);
        }
        await transaction.CommitAsync(cancellationToken);
        return result;
    }

    /// <summary>Commits (<paramref name="action"/> 0, with the quantity used), releases (1) or expires (2) a reservation.</summary>
    public async Task<Settlement> SettleAsync(Guid reservationId, int action, long? quantity, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleAsync<Settlement>(new CommandDefinition(
            "SELECT outcome AS Outcome, answer AS Answer FROM usage_settle(@reservationId, @action, @quantity, @now)",
            new { reservationId, action, quantity, now = now.ToUniversalTime() }, cancellationToken: cancellationToken));
    }

    /// <summary>Active reservations whose time is up, oldest first.</summary>
    public async Task<IReadOnlyList<Guid>> ExpiredAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return (await connection.QueryAsync<Guid>(new CommandDefinition(
            "SELECT reservation_id FROM reservations WHERE status = 'active' AND expires_at <= @now ORDER BY expires_at LIMIT @limit",
            new { now = now.ToUniversalTime(), limit }, cancellationToken: cancellationToken))).ToList();
    }
}
