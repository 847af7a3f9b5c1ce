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
    /// <summary>Tokens one unit costs on a <c>tokens</c> meter (0 otherwise).</summary>
    public long TokensPerUnit { get; init; }
}

/// <summary>A reserve's result; <see cref="ReservationId"/> names the reservation (for a token-backed claim, the one to debit for).</summary>
public sealed record ReserveResult(SpendResult Spend, Guid? ReservationId, long ClaimTokens);

/// <summary>Tokens a settled token-backed reservation owes back to the user's wallet (until Wallet confirms the return).</summary>
public sealed record TokenReturn(Guid ReservationId, string UserId, long Tokens);

/// <summary>
/// The outcome of a commit, release or expiry: <c>ok</c>, <c>not_found</c>, <c>expired</c>, <c>committed</c>, <c>released</c>,
/// <c>too_much</c>, <c>not_due</c>; with the tokens it owes back to the wallet, if any.
/// </summary>
public sealed record Settlement(string Outcome, string? Answer, string? ReturnUser = null, long? ReturnTokens = null);

/// <summary>
/// What Usage decided for a settlement on the subscriber's <paramref name="Version"/>: the plan's current terms
/// (<paramref name="Current"/>: its limit, null when unlimited, and the Stripe meter event its overage is billed to, null
/// when not billed), or the reservation's own.
/// </summary>
public sealed record SettleTerms(bool Current, long? Limit, string? EventName, long Version);

/// <summary>The <c>reservations</c> table, through its functions: each reserve and each settlement is one statement.</summary>
public sealed class ReservationStore(NpgsqlDataSource dataSource, TokenBalanceStore balances, Spending.QuotaAnnouncer announcer)
{
    /// <summary>Reserves in one transaction with the QuotaLow / QuotaExhausted it causes.</summary>
    public async Task<ReserveResult> ReserveAsync(ReserveCommand c, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        SpendResult result;
        Guid? reservationId;
        long claimTokens;
        var announce = false;
        await using (var command = new NpgsqlCommand(
            "SELECT outcome, status_code, answer, used_before, used_after, stored_user, stored_meter, stored_quantity, reservation_id, claim_tokens " +
            "FROM usage_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)", connection, transaction))
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
            p.Add(SpendWriter.Param(NpgsqlDbType.Bigint, c.TokensPerUnit));
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
            reservationId = reader.IsDBNull(8) ? null : reader.GetGuid(8);
            claimTokens = reader.IsDBNull(9) ? 0 : reader.GetInt64(9);
        }
        if (result is { Outcome: SpendOutcome.Answered, UsedBefore: { } before, UsedAfter: { } after } && c.Limit is { } limit
            && c.WindowStart is { } start && c.WindowEnd is { } end)
        {
            announce = await QuotaAnnouncements.RecordAsync(connection, transaction, c.UserId, c.Meter, start, end, limit, before, after, c.Now);
        }
        await transaction.CommitAsync(cancellationToken);
        if (announce)
        {
            announcer.Wake();
        }
        return new ReserveResult(result, reservationId, claimTokens);
    }

    /// <summary>Records Wallet's answer to a claim's debit (200: active, else refused with <paramref name="refusal"/>); returns the reservation's answer.</summary>
    public async Task<(int StatusCode, string Answer)> DebitedAsync(Guid reservationId, string userId, int statusCode, string? refusal, long balance,
        DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var answer = await connection.QuerySingleAsync<(int, string)>(new CommandDefinition(
            "SELECT status_code, answer FROM usage_reservation_debited(@reservationId, @statusCode, @refusal, @balance)",
            new { reservationId, statusCode, refusal, balance }, transaction, cancellationToken: cancellationToken));
        if (statusCode is 200 or 402)
        {
            // Wallet's answer is the balance now (debits publish no event): the usage view shows it.
            await balances.SetFromDebitAsync(connection, transaction, userId, balance, now, cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return answer;
    }

    /// <summary>Returns Wallet has not confirmed yet that were settled before <paramref name="settledBefore"/>, oldest first.</summary>
    public async Task<IReadOnlyList<TokenReturn>> ReturnsDueAsync(DateTimeOffset settledBefore, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return (await connection.QueryAsync<TokenReturn>(new CommandDefinition(
            "SELECT reservation_id AS ReservationId, user_id AS UserId, tokens_to_return AS Tokens FROM reservations " +
            "WHERE return_due AND settled_at < @settledBefore ORDER BY settled_at LIMIT @limit",
            new { settledBefore = settledBefore.ToUniversalTime(), limit }, cancellationToken: cancellationToken))).ToList();
    }

    /// <summary>Wallet confirmed the return (with the wallet's balance after it, when it told).</summary>
    public async Task ReturnedAsync(TokenReturn done, long? balance, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            "UPDATE reservations SET return_due = false WHERE reservation_id = @reservationId AND return_due",
            new { reservationId = done.ReservationId }, transaction, cancellationToken: cancellationToken));
        if (balance is { } b)
        {
            await balances.SetFromDebitAsync(connection, transaction, done.UserId, b, now, cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>
    /// Commits (<paramref name="action"/> 0, with the quantity used), releases (1) or expires (2) a reservation, under the
    /// plan's current terms when <paramref name="terms"/> say so (else the terms it was made under). Outcome <c>stale</c>
    /// when the subscriber changed since <paramref name="terms"/> were decided.
    /// </summary>
    public async Task<Settlement> SettleAsync(Guid reservationId, int action, long? quantity, DateTimeOffset now, SettleTerms? terms,
        CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleAsync<Settlement>(new CommandDefinition(
            "SELECT outcome AS Outcome, answer AS Answer, return_user AS ReturnUser, return_tokens AS ReturnTokens " +
            "FROM usage_settle(@reservationId, @action, @quantity, @now, @current, @limit, @eventName, @version)",
            new
            {
                reservationId, action, quantity, now = now.ToUniversalTime(), current = terms?.Current ?? false, limit = terms?.Limit,
                eventName = terms?.EventName, version = terms?.Version,
            }, cancellationToken: cancellationToken));
    }

    /// <summary>Whose reservation it is, on which meter and window (null when there is none).</summary>
    public async Task<(string UserId, string Meter, DateTime? WindowStart)?> OwnerAsync(Guid reservationId, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<(string, string, DateTime?)?>(new CommandDefinition(
            "SELECT user_id, meter, window_start FROM usage_reservation_owner(@reservationId)",
            new { reservationId }, cancellationToken: cancellationToken));
    }

    /// <summary>Active reservations (and token-backed claims never confirmed) whose time is up, oldest first.</summary>
    public async Task<IReadOnlyList<Guid>> ExpiredAsync(DateTimeOffset now, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return (await connection.QueryAsync<Guid>(new CommandDefinition(
            "SELECT reservation_id FROM reservations WHERE status IN ('active', 'claimed') AND expires_at <= @now ORDER BY expires_at LIMIT @limit",
            new { now = now.ToUniversalTime(), limit }, cancellationToken: cancellationToken))).ToList();
    }
}
