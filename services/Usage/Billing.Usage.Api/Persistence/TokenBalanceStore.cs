using Dapper;
using Npgsql;

namespace Billing.Usage.Api.Persistence;

/// <summary>The <c>token_balances</c> projection of Wallet's events; Wallet's ledger stays the truth.</summary>
public sealed class TokenBalanceStore(NpgsqlDataSource dataSource)
{
    /// <summary>The balance Usage last heard of (0 when none).</summary>
    public async Task<long> KnownAsync(string userId, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<long?>(new CommandDefinition(
            "SELECT balance FROM token_balances WHERE user_id = @userId", new { userId }, cancellationToken: cancellationToken)) ?? 0;
    }

    /// <summary>Takes <paramref name="balanceAfter"/> when it is newer than what is stored.</summary>
    public Task ApplyAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string userId, long balanceAfter, DateTimeOffset occurredAt,
        CancellationToken cancellationToken) =>
        connection.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO token_balances AS b (user_id, balance, occurred_at) VALUES (@userId, @balanceAfter, @occurredAt)
            ON CONFLICT (user_id) DO UPDATE SET balance = EXCLUDED.balance, occurred_at = EXCLUDED.occurred_at
            WHERE b.occurred_at < EXCLUDED.occurred_at
            """,
            new { userId, balanceAfter, occurredAt = occurredAt.ToUniversalTime() }, transaction, cancellationToken: cancellationToken));

    /// <summary>
    /// Takes the balance Wallet just answered a debit with: it is the truth at this moment, so it always wins over what
    /// is stored, and the stored time only moves forward (a late event about an older balance stays ignored).
    /// </summary>
    public Task SetFromDebitAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string userId, long balance, DateTimeOffset at,
        CancellationToken cancellationToken) =>
        connection.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO token_balances AS b (user_id, balance, occurred_at) VALUES (@userId, @balance, @at)
            ON CONFLICT (user_id) DO UPDATE SET balance = EXCLUDED.balance, occurred_at = GREATEST(b.occurred_at, EXCLUDED.occurred_at)
            """,
            new { userId, balance, at = at.ToUniversalTime() }, transaction, cancellationToken: cancellationToken));
}
