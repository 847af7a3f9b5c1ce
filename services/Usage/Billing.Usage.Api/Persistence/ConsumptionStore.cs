using Dapper;
using Npgsql;

namespace Billing.Usage.Api.Persistence;

/// <summary>
/// A consume whose key is claimed while Wallet's debit decides: its id, the window's counter, when it was claimed and the
/// tokens it costs (fixed by its first attempt).
/// </summary>
public sealed record TokenClaim(Guid ConsumptionId, long Used, DateTime CreatedAt, long Tokens);

/// <summary>A token claim nobody finished.</summary>
public sealed record StaleTokenClaim(string IdempotencyKey, Guid ConsumptionId, string UserId, string Meter, long Quantity);

/// <summary>
/// The <c>consumptions</c> records outside the group-commit path: the token-paid consumes, which wait for Wallet between
/// claiming the key (in <c>usage_consume_many</c>) and recording Wallet's answer.
/// </summary>
public sealed class ConsumptionStore(NpgsqlDataSource dataSource, TokenBalanceStore balances)
{
    /// <summary>
    /// The claimed consume's id, the window's used count and its price: <paramref name="tokens"/> when this is the first
    /// attempt to pay it, else what the first attempt fixed (a retry after a plan change debits the same amount).
    /// </summary>
    public async Task<TokenClaim> ClaimAsync(string idempotencyKey, DateTimeOffset windowStart, long tokens, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // An UPDATE (not a read) so that a concurrent retry waits for the first one's price and sees it.
        return await connection.QuerySingleAsync<TokenClaim>(new CommandDefinition(
            """
            SELECT consumption_id AS ConsumptionId, used AS Used, created_at AS CreatedAt, tokens AS Tokens
            FROM usage_claim_price(@idempotencyKey, @windowStart, @tokens)
            """,
            new { idempotencyKey, windowStart = windowStart.ToUniversalTime(), tokens }, cancellationToken: cancellationToken));
    }

    /// <summary>
    /// Records Wallet's answer once; returns the answer stored under the key (the first one), or null when the claim is
    /// still open but is older than <paramref name="timeout"/> once its row is locked: it belongs to the claim sweeper,
    /// which gives back whatever Wallet took (the sweeper settles through <see cref="ClaimInHand"/>).
    /// </summary>
    public async Task<(int StatusCode, string Answer)?> SettleTokensAsync(string idempotencyKey, int statusCode, string answer,
        (string UserId, long Balance, DateTimeOffset At)? balanceAfterDebit, TimeProvider clock, TimeSpan timeout, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        // The claim's row lock orders this with the sweeper, which holds it while Wallet gives the tokens back. The clock is
        // read only once the row is held: a request that waited behind a sweeper whose transaction failed after Wallet had
        // given the tokens back finds the claim as old as the sweeper did, and leaves it to the next sweep.
        var claim = await connection.QuerySingleAsync<(int Status, DateTime CreatedAt)>(new CommandDefinition(
            "SELECT status_code, created_at FROM usage_lock_claim(@idempotencyKey)",
            new { idempotencyKey }, transaction, cancellationToken: cancellationToken));
        if (claim.Status == 0 && new DateTimeOffset(DateTime.SpecifyKind(claim.CreatedAt, DateTimeKind.Utc)) <= clock.GetUtcNow() - timeout)
        {
            return null;
        }
        var settled = await SettleAsync(connection, transaction, idempotencyKey, statusCode, answer, balanceAfterDebit, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return settled;
    }

    private async Task<(int StatusCode, string Answer)> SettleAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string idempotencyKey,
        int statusCode, string answer, (string UserId, long Balance, DateTimeOffset At)? balanceAfterDebit, CancellationToken cancellationToken)
    {
        if (balanceAfterDebit is { } b)
        {
            // Debits publish no event: keep the balance Usage shows in step with Wallet's answer, with the settlement.
            await balances.SetFromDebitAsync(connection, transaction, b.UserId, b.Balance, b.At, cancellationToken);
        }
        var settled = await connection.QuerySingleAsync<(int, string)>(new CommandDefinition(
            "SELECT status_code, answer FROM usage_settle_tokens(@idempotencyKey, @statusCode, @answer)",
            new { idempotencyKey, statusCode, answer }, transaction, cancellationToken: cancellationToken));
        return settled;
    }

    /// <summary>
    /// Takes a stale claim for the sweeper: its row locked until the returned handle settles it or is disposed, so a
    /// request that debited under the claim cannot record an allowed spend while the sweeper gives the tokens back. Null
    /// when the claim was finished meanwhile.
    /// </summary>
    public async Task<ClaimInHand?> TakeStaleClaimAsync(string idempotencyKey, CancellationToken cancellationToken)
    {
        var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var status = await connection.ExecuteScalarAsync<int?>(new CommandDefinition(
            "SELECT status_code FROM usage_lock_claim(@idempotencyKey)",
            new { idempotencyKey }, transaction, cancellationToken: cancellationToken));
        if (status is not 0)
        {
            await transaction.DisposeAsync();
            await connection.DisposeAsync();
            return null;
        }
        return new ClaimInHand(this, connection, transaction, idempotencyKey);
    }

    /// <summary>A stale token claim the sweeper holds (row locked); settle it or dispose it (nothing changes).</summary>
    public sealed class ClaimInHand(ConsumptionStore store, NpgsqlConnection connection, NpgsqlTransaction transaction, string idempotencyKey)
        : IAsyncDisposable
    {
        public async Task SettleAsync(int statusCode, string answer, (string UserId, long Balance, DateTimeOffset At)? balanceAfterDebit,
            CancellationToken cancellationToken)
        {
            await store.SettleAsync(connection, transaction, idempotencyKey, statusCode, answer, balanceAfterDebit, cancellationToken);
            await transaction.CommitAsync(cancellationToken);
        }

        public async ValueTask DisposeAsync()
        {
            await transaction.DisposeAsync();
            await connection.DisposeAsync();
        }
    }

    /// <summary>Token claims (status 0) made before <paramref name="before"/>, oldest first.</summary>
    public async Task<IReadOnlyList<StaleTokenClaim>> StaleClaimsAsync(DateTimeOffset before, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return (await connection.QueryAsync<StaleTokenClaim>(new CommandDefinition(
            """
            SELECT idempotency_key AS IdempotencyKey, consumption_id AS ConsumptionId, user_id AS UserId, meter AS Meter, quantity AS Quantity
            FROM consumptions WHERE status_code = 0 AND created_at < @before ORDER BY created_at LIMIT @limit
            """, new { before = before.ToUniversalTime(), limit }, cancellationToken: cancellationToken))).ToList();
    }
}
