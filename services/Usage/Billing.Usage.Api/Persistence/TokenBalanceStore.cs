using Dapper;
using Npgsql;

namespace Billing.Usage.Api.Persistence;

/// <summary>The <c>token_balances</c> projection of Wallet's events; Wallet's ledger stays the truth.</summary>
public sealed class TokenBalanceStore
{
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
}
