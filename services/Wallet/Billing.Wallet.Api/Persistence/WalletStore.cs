using Billing.Catalog;
using Billing.Contracts;
using Billing.ServiceDefaults.Messaging;
using Billing.Wallet.Core.Ledger;
using Billing.Wallet.Core.Requests;
using Dapper;
using Npgsql;

namespace Billing.Wallet.Api.Persistence;

/// <summary>One row of the append-only ledger.</summary>
public sealed class LedgerRow
{
    public long Id { get; init; }
    public string UserId { get; init; } = "";
    public string Kind { get; init; } = "";
    public long Amount { get; init; }
    public long BalanceAfter { get; init; }
    public string Reference { get; init; } = "";
    public long? Requested { get; init; }
    public long? Shortfall { get; init; }
    public string? Reason { get; init; }
    public DateTime? ExpiresAt { get; init; }
    public DateTime CreatedAt { get; init; }
}

/// <summary>What a debit answered; replayed for every retry with the same idempotency key.</summary>
public sealed record DebitOutcome(DebitResult Result, long Balance, long? TransactionId);

public enum DebitResult
{
    Debited,
    InsufficientTokens,
    IdempotencyConflict,
}

/// <summary>What a return answered; replayed for every retry of the same return.</summary>
public sealed record ReturnOutcome(ReturnResult Result, long Returned, long Balance);

public enum ReturnResult
{
    /// <summary>The tokens went back (or had gone back, for a retry).</summary>
    Returned,

    /// <summary>The key was never debited (refused, or not yet asked): nothing to give back, and a later debit under it takes nothing.</summary>
    NothingDebited,

    /// <summary>The key names another user's debit, a return of another amount, or more than was debited.</summary>
    Conflict,
}

/// <summary>What an admin grant answered.</summary>
public sealed record GrantOutcome(LedgerRow? Entry, bool Conflict);

/// <summary>An adjustment's entry; or a conflict (the key names another adjustment); or not enough tokens (<see cref="Balance"/>).</summary>
public sealed record AdjustmentOutcome(LedgerRow? Entry, bool Conflict, long Balance);

/// <summary>Tokens that will expire, soonest first.</summary>
public sealed record ExpiringTokens(long Amount, DateTime ExpiresAt);

/// <summary>A wallet whose balance is not the sum of its ledger.</summary>
/// <summary>A wallet whose balance differs from the sum of its ledger, or holds fewer tokens than its expiring lots.</summary>
public sealed record WalletMismatch(string UserId, long Balance, long LedgerSum, long ExpiringRemaining);

/// <summary>
/// The SQL of wallets and their ledger. Every balance change happens under the wallet's row lock (taken by the
/// <c>UPDATE wallets</c> that changes it) and writes exactly one ledger row with the balance after it, in the same
/// transaction, so the ledger always sums to the balance. The CHECK on <c>wallets.balance</c> makes overspending
/// impossible even for code that forgets to check.
/// </summary>
public sealed class WalletStore(NpgsqlDataSource dataSource, BillingCatalog catalog, TimeProvider clock)
{
    private const string LedgerColumns =
        """
        id AS Id, user_id AS UserId, kind AS Kind, amount AS Amount, balance_after AS BalanceAfter, reference AS Reference,
        requested AS Requested, shortfall AS Shortfall, reason AS Reason, expires_at AS ExpiresAt, created_at AS CreatedAt
        """;

    // ---------------------------------------------------------------- reads

    /// <summary>The balance, after creating the wallet (with the sign-up grant) and expiring what is due.</summary>
    public async Task<(long Balance, IReadOnlyList<ExpiringTokens> Expiring)> ViewAsync(string userId, CancellationToken ct)
    {
        await using var c = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await c.BeginTransactionAsync(ct);
        var now = clock.GetUtcNow();
        await EnsureWalletAsync(c, tx, userId, now, ct);
        await ExpireDueAsync(c, tx, userId, now, onlyIfDue: true, ct);
        var balance = await c.QuerySingleAsync<long>(new CommandDefinition(
            "SELECT balance FROM wallets WHERE user_id = @userId", new { userId }, tx, cancellationToken: ct));
        var expiring = (await c.QueryAsync<ExpiringTokens>(new CommandDefinition(
            """
            SELECT SUM(remaining)::bigint AS Amount, expires_at AS ExpiresAt FROM wallet_lots
            WHERE user_id = @userId AND remaining > 0 GROUP BY expires_at ORDER BY expires_at LIMIT 50
            """, new { userId }, tx, cancellationToken: ct))).ToList();
        await tx.CommitAsync(ct);
        return (balance, expiring);
    }

    /// <summary>The user's ledger, newest first, one page after <paramref name="beforeId"/>.</summary>
    public async Task<(IReadOnlyList<LedgerRow> Items, long? NextBefore)> TransactionsAsync(string userId, int limit, long? beforeId, CancellationToken ct)
    {
        await using var c = await dataSource.OpenConnectionAsync(ct);
        var rows = (await c.QueryAsync<LedgerRow>(new CommandDefinition(
            $"""
            SELECT {LedgerColumns} FROM wallet_ledger
            WHERE user_id = @userId AND (@beforeId::bigint IS NULL OR id < @beforeId)
            ORDER BY id DESC LIMIT @take
            """, new { userId, beforeId, take = limit + 1 }, cancellationToken: ct))).ToList();
        return rows.Count > limit ? (rows[..limit], rows[limit - 1].Id) : (rows, null);
    }

    /// <summary>
    /// Every wallet whose balance differs from the sum of its ledger, or is smaller than what its expiring lots still hold
    /// (empty when the books are right).
    /// </summary>
    public async Task<(int Checked, IReadOnlyList<WalletMismatch> Mismatches)> VerifyAsync(CancellationToken ct)
    {
        await using var c = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await c.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct);
        var count = await c.QuerySingleAsync<int>(new CommandDefinition("SELECT count(*)::int FROM wallets", transaction: tx, cancellationToken: ct));
        var mismatches = (await c.QueryAsync<WalletMismatch>(new CommandDefinition(
            """
            SELECT w.user_id AS UserId, w.balance AS Balance, COALESCE(l.total, 0)::bigint AS LedgerSum,
                   COALESCE(x.remaining, 0)::bigint AS ExpiringRemaining
            FROM wallets w
            LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM wallet_ledger GROUP BY user_id) l ON l.user_id = w.user_id
            LEFT JOIN (SELECT user_id, SUM(remaining) AS remaining FROM wallet_lots WHERE remaining > 0 GROUP BY user_id) x ON x.user_id = w.user_id
            WHERE w.balance <> COALESCE(l.total, 0) OR w.balance < COALESCE(x.remaining, 0)
            ORDER BY w.user_id LIMIT 1000
            """, transaction: tx, cancellationToken: ct))).ToList();
        await tx.CommitAsync(ct);
        return (count, mismatches);
    }

    // ---------------------------------------------------------------- debit

    /// <summary>
    /// One atomic check-and-spend under an idempotency key: the key is claimed first (a concurrent duplicate waits on
    /// it and then replays the first answer), then <c>UPDATE … WHERE balance &gt;= amount</c> spends or refuses, the
    /// soonest-expiring lots are spent first, and the ledger row and the answer are written in the same transaction.
    /// </summary>
    public async Task<DebitOutcome> DebitAsync(Debit debit, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            await using var c = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await c.BeginTransactionAsync(ct);
            var now = clock.GetUtcNow();
            var args = new { debit.UserId, debit.Amount, Key = debit.IdempotencyKey, debit.Reference, Now = now };

            bool claimed, due;
            await using (var grid = await c.QueryMultipleAsync(new CommandDefinition(
                """
                INSERT INTO wallet_debits (idempotency_key, user_id, amount, reference, created_at)
                VALUES (@Key, @UserId, @Amount, @Reference, @Now)
                ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1;
                SELECT EXISTS (SELECT 1 FROM wallet_lots WHERE user_id = @UserId AND remaining > 0 AND expires_at <= @Now);
                """, args, tx, cancellationToken: ct)))
            {
                claimed = (await grid.ReadAsync<int>()).Any();
                due = await grid.ReadSingleAsync<bool>();
            }

            if (!claimed)
            {
                var first = await c.QuerySingleAsync<(string UserId, long Amount, bool Debited, long Balance, long? LedgerId, bool Cancelled)>(new CommandDefinition(
                    "SELECT user_id, amount, debited, balance, ledger_id, cancelled FROM wallet_debits WHERE idempotency_key = @Key",
                    args, tx, cancellationToken: ct));
                await tx.RollbackAsync(ct);
                // A key whose return came first (a reservation given up before its debit arrived) never debits.
                if (first.UserId != debit.UserId || first.Amount != debit.Amount || first.Cancelled)
                {
                    return new DebitOutcome(DebitResult.IdempotencyConflict, 0, null);
                }
                return first.Debited
                    ? new DebitOutcome(DebitResult.Debited, first.Balance, first.LedgerId)
                    : new DebitOutcome(DebitResult.InsufficientTokens, first.Balance, null);
            }

            if (due)
            {
                await ExpireDueAsync(c, tx, debit.UserId, now, onlyIfDue: false, ct);
            }

            var balance = await c.QuerySingleOrDefaultAsync<long?>(new CommandDefinition(
                """
                UPDATE wallets SET balance = balance - @Amount, updated_at = @Now
                WHERE user_id = @UserId AND balance >= @Amount RETURNING balance
                """, args, tx, cancellationToken: ct));
            if (balance is null)
            {
                var current = await c.QuerySingleOrDefaultAsync<long?>(new CommandDefinition(
                    "SELECT balance FROM wallets WHERE user_id = @UserId", args, tx, cancellationToken: ct));
                if (current is null && attempt == 0)
                {
                    // First contact with this user: create the wallet (and its sign-up grant), then try again.
                    await tx.RollbackAsync(ct);
                    await EnsureWalletAsync(debit.UserId, ct);
                    continue;
                }
                await c.ExecuteAsync(new CommandDefinition(
                    "UPDATE wallet_debits SET debited = false, balance = @Balance WHERE idempotency_key = @Key",
                    new { Balance = current ?? 0, Key = debit.IdempotencyKey }, tx, cancellationToken: ct));
                await tx.CommitAsync(ct);
                return new DebitOutcome(DebitResult.InsufficientTokens, current ?? 0, null);
            }

            // The wallet row is locked from here on, so this statement's snapshot of the lots is current.
            var ledgerId = await c.QuerySingleAsync<long>(new CommandDefinition(
                """
                WITH ordered AS (
                    SELECT id, remaining, SUM(remaining) OVER (ORDER BY expires_at, id) - remaining AS before
                    FROM wallet_lots WHERE user_id = @UserId AND remaining > 0
                ), spent AS (
                    UPDATE wallet_lots l SET remaining = l.remaining - LEAST(o.remaining, @Amount - o.before)
                    FROM ordered o WHERE l.id = o.id AND o.before < @Amount
                    RETURNING l.id, LEAST(o.remaining, @Amount - o.before) AS took
                ), took AS (
                    -- Which lots this debit took from, so that a return can put the tokens back where they were.
                    INSERT INTO wallet_debit_lots (idempotency_key, lot_id, amount) SELECT @Key, id, took FROM spent WHERE took > 0
                ), entry AS (
                    INSERT INTO wallet_ledger (user_id, kind, amount, balance_after, reference, created_at)
                    VALUES (@UserId, 'debit', -@Amount, @Balance, @Reference, @Now) RETURNING id
                ), answer AS (
                    UPDATE wallet_debits SET debited = true, balance = @Balance, ledger_id = (SELECT id FROM entry)
                    WHERE idempotency_key = @Key
                )
                SELECT id FROM entry
                """, new { debit.UserId, debit.Amount, Key = debit.IdempotencyKey, debit.Reference, Now = now, Balance = balance.Value },
                tx, cancellationToken: ct));
            await tx.CommitAsync(ct);
            return new DebitOutcome(DebitResult.Debited, balance.Value, ledgerId);
        }
    }

    // ---------------------------------------------------------------- returns

    /// <summary>
    /// Gives back <see cref="DebitReturn.Amount"/> of the tokens the debit under its key took, once per debit: first the
    /// part that came from tokens that never expire, then into the lots it was taken from, latest-expiring first, so a
    /// returned token keeps its expiry (one that has expired meanwhile leaves again through an <c>expiry</c> entry). A
    /// return for a key that was never debited records the key as spent-nothing, so a debit arriving late under it
    /// takes nothing.
    /// </summary>
    public async Task<ReturnOutcome> ReturnAsync(DebitReturn r, CancellationToken ct)
    {
        await using var c = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await c.BeginTransactionAsync(ct);
        var now = clock.GetUtcNow();

        // A return that comes first cancels the key (for "all", any amount does: a later debit under it is refused).
        var cancelled = r.Amount ?? 1;
        var tombstone = await c.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO wallet_debits (idempotency_key, user_id, amount, reference, debited, balance, return_asked, returned_at, created_at, cancelled)
            VALUES (@Key, @UserId, @cancelled, 'returned before any debit', false, 0, @cancelled, @now, @now, true)
            ON CONFLICT (idempotency_key) DO NOTHING
            """, new { Key = r.IdempotencyKey, r.UserId, cancelled, now }, tx, cancellationToken: ct));
        if (tombstone == 1)
        {
            await tx.CommitAsync(ct);
            return new ReturnOutcome(ReturnResult.NothingDebited, 0, await BalanceAsync(c, null, r.UserId, ct));
        }

        var debit = await c.QuerySingleAsync<(string UserId, long Amount, bool Debited, long? ReturnAsked, long Returned, string? Reference, DateTime CreatedAt)>(
            new CommandDefinition(
                "SELECT user_id, amount, debited, return_asked, returned, reference, created_at FROM wallet_debits WHERE idempotency_key = @Key FOR UPDATE",
                new { Key = r.IdempotencyKey }, tx, cancellationToken: ct));
        if (debit.UserId != r.UserId)
        {
            return new ReturnOutcome(ReturnResult.Conflict, 0, 0);
        }
        var amount = r.Amount ?? debit.Amount;
        if (!debit.Debited)
        {
            // Refused, or cancelled by an earlier return: nothing was taken, so there is nothing to give back.
            if (debit.ReturnAsked is null)
            {
                await c.ExecuteAsync(new CommandDefinition(
                    "UPDATE wallet_debits SET return_asked = LEAST(@amount, amount), returned_at = @now WHERE idempotency_key = @Key",
                    new { amount, now, Key = r.IdempotencyKey }, tx, cancellationToken: ct));
            }
            await tx.CommitAsync(ct);
            return new ReturnOutcome(ReturnResult.NothingDebited, 0, await BalanceAsync(c, null, r.UserId, ct));
        }
        if (debit.ReturnAsked is { } asked)
        {
            await tx.RollbackAsync(ct);
            return asked != amount
                ? new ReturnOutcome(ReturnResult.Conflict, 0, 0)
                : new ReturnOutcome(ReturnResult.Returned, debit.Returned, await BalanceAsync(c, null, r.UserId, ct));
        }
        if (amount > debit.Amount)
        {
            return new ReturnOutcome(ReturnResult.Conflict, 0, 0);
        }

        await c.ExecuteAsync(new CommandDefinition(
            "SELECT 1 FROM wallets WHERE user_id = @UserId FOR UPDATE", new { r.UserId }, tx, cancellationToken: ct));
        var lots = (await c.QueryAsync<(long LotId, long Took, bool Expired)>(new CommandDefinition(
            """
            SELECT d.lot_id, d.amount, l.expires_at <= @now FROM wallet_debit_lots d JOIN wallet_lots l ON l.id = d.lot_id
            WHERE d.idempotency_key = @Key ORDER BY l.expires_at DESC, l.id DESC
            """, new { Key = r.IdempotencyKey, now }, tx, cancellationToken: ct))).ToList();
        var left = amount - Math.Min(amount, debit.Amount - lots.Sum(l => l.Took));
        var refilled = new List<(long LotId, long Gave, bool Expired)>();
        foreach (var (lotId, took, expired) in lots)
        {
            if (left == 0)
            {
                break;
            }
            var give = Math.Min(left, took);
            await c.ExecuteAsync(new CommandDefinition(
                "UPDATE wallet_lots SET remaining = remaining + @give, expired_at = NULL WHERE id = @lotId",
                new { give, lotId }, tx, cancellationToken: ct));
            refilled.Add((lotId, give, expired));
            left -= give;
        }

        await c.ExecuteAsync(new CommandDefinition(
            """
            WITH w AS (
                UPDATE wallets SET balance = balance + @amount, updated_at = @now WHERE user_id = @UserId RETURNING balance
            ), entry AS (
                INSERT INTO wallet_ledger (user_id, kind, amount, balance_after, reference, reason, dedupe_key, created_at)
                SELECT @UserId, 'return', @amount, w.balance, @Reference, @Reason, 'return:' || @Key, @now FROM w
                RETURNING id
            )
            UPDATE wallet_debits SET return_asked = @amount, returned = @amount, return_ledger_id = (SELECT id FROM entry), returned_at = @now
            WHERE idempotency_key = @Key
            """, new { r.UserId, amount, Key = r.IdempotencyKey, r.Reason, now, Reference = debit.Reference ?? r.IdempotencyKey },
            tx, cancellationToken: ct));
        // Tokens of a refunded pack that come back into its lot after it expired are still its refund's: they pay what the
        // refund left owed, then replace the user's own tokens it took in their place, before the lot's expiry takes the
        // rest — or the user's own tokens would expire with the pack. They pay nothing else (below).
        foreach (var (lotId, gave, _) in refilled.Where(l => l.Expired))
        {
            var paid = await PayRefundDebtAsync(c, tx, r.UserId, gave, r.IdempotencyKey, debit.CreatedAt, now, ct, ofLotId: lotId);
            await SwapIntoClawbackAsync(c, tx, lotId, gave - paid, ct);
        }
        // A token returned into a lot that has expired meanwhile leaves again, through its own expiry entry, before
        // anything else: an expired token is worth nothing, so it cannot pay a refund debt either.
        await ExpireDueAsync(c, tx, r.UserId, now, onlyIfDue: true, ct);
        await PayRefundDebtAsync(c, tx, r.UserId, amount - refilled.Where(l => l.Expired).Sum(l => l.Gave), r.IdempotencyKey, debit.CreatedAt, now, ct);
        var swapped = false;
        foreach (var (lotId, gave, _) in refilled.Where(l => !l.Expired))
        {
            swapped |= await SwapIntoClawbackAsync(c, tx, lotId, gave, ct) > 0;
        }
        if (swapped)
        {
            // A lot the claw-back had taken from may have expired since: what it gets back leaves again, now.
            await ExpireDueAsync(c, tx, r.UserId, now, onlyIfDue: true, ct);
        }
        var balance = await BalanceAsync(c, tx, r.UserId, ct);
        await tx.CommitAsync(ct);
        return new ReturnOutcome(ReturnResult.Returned, amount, balance);
    }

    /// <summary>
    /// Tokens of a refunded pack that were already spent when the refund came (its clawback's shortfall) are owed; when
    /// spent tokens come back (<paramref name="returned"/> of them), the debt is paid from them first, through a
    /// <c>refund</c> entry and <see cref="TokensClawedBack"/>, oldest purchase first. Only tokens spent before a refund
    /// can be its pack's: what a debit made after the refund gives back (tokens bought since) pays none of its debt.
    /// With <paramref name="ofLotId"/>, only the debt of the pack whose lot that is, from the <paramref name="returned"/>
    /// tokens just put back into that lot (so the claw-back takes them from it first). Returns how many tokens paid debts.
    /// </summary>
    private static async Task<long> PayRefundDebtAsync(NpgsqlConnection c, NpgsqlTransaction tx, string userId, long returned, string debitKey,
        DateTime debitedAt, DateTimeOffset now, CancellationToken ct, long? ofLotId = null)
    {
        var debts = (await c.QueryAsync<(string SessionId, long Outstanding, long? LotId)>(new CommandDefinition(
            """
            SELECT p.checkout_session_id, p.clawback_outstanding, p.lot_id FROM wallet_purchases p
            WHERE p.user_id = @userId AND p.clawback_outstanding > 0 AND (@ofLotId::bigint IS NULL OR p.lot_id = @ofLotId)
              AND EXISTS (SELECT 1 FROM wallet_ledger e
                          WHERE e.user_id = p.user_id AND e.kind = 'refund' AND e.created_at > @debitedAt
                            AND starts_with(e.dedupe_key, 'refund:' || p.checkout_session_id || '#'))
            ORDER BY p.created_at, p.checkout_session_id FOR UPDATE OF p
            """, new { userId, debitedAt, ofLotId }, tx, cancellationToken: ct))).ToList();
        if (debts.Count == 0)
        {
            return 0;
        }
        // What came back and is still here: never more than the balance (tokens that expired in the meantime are gone).
        var left = Math.Min(returned, await BalanceAsync(c, tx, userId, ct));
        var paid = 0L;
        foreach (var (sessionId, outstanding, lotId) in debts)
        {
            var take = Math.Min(left, outstanding);
            if (take == 0)
            {
                break;
            }
            await TakeForClawbackAsync(c, tx, userId, sessionId, lotId, take, ct);
            var dedupeKey = $"refund-debt:{debitKey}:{sessionId}{(ofLotId is null ? "" : ":expired-lot")}";
            var entry = await RefundEntryAsync(c, tx, userId, take, reference: sessionId, requested: take,
                "tokens of a refunded pack, spent before the refund, came back and are taken now", dedupeKey, now, ct);
            await c.ExecuteAsync(new CommandDefinition(
                "UPDATE wallet_purchases SET clawback_outstanding = clawback_outstanding - @take WHERE checkout_session_id = @sessionId",
                new { take, sessionId }, tx, cancellationToken: ct));
            await Outbox.EnqueueAsync(c, tx, new TokensClawedBack
            {
                UserId = userId,
                Requested = take,
                Amount = take,
                Shortfall = 0,
                BalanceAfter = entry.BalanceAfter,
                Reference = sessionId,
                OccurredAt = now,
            }, Outbox.MessageId(dedupeKey, nameof(TokensClawedBack)), ct);
            left -= take;
            paid += take;
        }
        return paid;
    }

    /// <summary>
    /// Takes <paramref name="take"/> tokens (the lots already spent by the caller) as a <c>refund</c> entry of the ledger:
    /// <paramref name="requested"/> were called for, the difference is the entry's shortfall.
    /// </summary>
    private static Task<LedgerRow> RefundEntryAsync(NpgsqlConnection c, NpgsqlTransaction tx, string userId, long take, string? reference,
        long requested, string reason, string dedupeKey, DateTimeOffset now, CancellationToken ct) =>
        c.QuerySingleAsync<LedgerRow>(new CommandDefinition(
            $"""
            WITH w AS (
                UPDATE wallets SET balance = balance - @take, updated_at = @now WHERE user_id = @userId RETURNING balance
            )
            INSERT INTO wallet_ledger (user_id, kind, amount, balance_after, reference, requested, shortfall, reason, dedupe_key, created_at)
            SELECT @userId, 'refund', -@take, w.balance, @reference, @requested, @shortfall, @reason, @dedupeKey, @now FROM w
            RETURNING {LedgerColumns}
            """,
            new { userId, take, now, reference, requested, shortfall = requested - take, reason, dedupeKey }, tx, cancellationToken: ct));

    private static async Task<long> BalanceAsync(NpgsqlConnection c, NpgsqlTransaction? tx, string userId, CancellationToken ct) =>
        await c.QuerySingleOrDefaultAsync<long?>(new CommandDefinition(
            "SELECT balance FROM wallets WHERE user_id = @userId", new { userId }, tx, cancellationToken: ct)) ?? 0;

    // ---------------------------------------------------------------- grants

    /// <summary>An admin's promotional or trial grant, once per idempotency key.</summary>
    public async Task<GrantOutcome> GrantAsync(Grant grant, CancellationToken ct)
    {
        var dedupeKey = "grant:" + grant.IdempotencyKey;
        try
        {
            await using var c = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await c.BeginTransactionAsync(ct);
            var now = clock.GetUtcNow();
            await EnsureWalletAsync(c, tx, grant.UserId, now, ct);
            var (entry, created) = await CreditAsync(c, tx, grant.UserId, LedgerKind.Grant, grant.Amount, grant.IdempotencyKey, dedupeKey,
                grant.Reason, grant.ExpiresAt, null, now, ct);
            await tx.CommitAsync(ct);
            return created || Same(entry, grant) ? new GrantOutcome(entry, false) : new GrantOutcome(null, true);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            // The same key, at the same moment, for another user: the first one won.
            await using var c = await dataSource.OpenConnectionAsync(ct);
            var existing = await ByDedupeKeyAsync(c, null, dedupeKey, ct);
            return existing is not null && Same(existing, grant) ? new GrantOutcome(existing, false) : new GrantOutcome(null, true);
        }
    }

    // ---------------------------------------------------------------- adjustments

    /// <summary>
    /// An admin's correction, once per idempotency key. Positive: tokens added for good (no expiry), announced as
    /// <see cref="TokensGranted"/> of kind <c>adjustment</c>. Negative: tokens taken away, soonest-expiring first, never
    /// below zero (refused with the balance instead), announced as <see cref="TokensClawedBack"/>.
    /// </summary>
    public async Task<AdjustmentOutcome> AdjustAsync(Adjustment adjustment, CancellationToken ct)
    {
        var dedupeKey = "adjustment:" + adjustment.IdempotencyKey;
        try
        {
            await using var c = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await c.BeginTransactionAsync(ct);
            var now = clock.GetUtcNow();
            await EnsureWalletAsync(c, tx, adjustment.UserId, now, ct);
            if (adjustment.Amount > 0)
            {
                var (credited, created) = await CreditAsync(c, tx, adjustment.UserId, LedgerKind.Adjustment, adjustment.Amount,
                    adjustment.IdempotencyKey, dedupeKey, adjustment.Reason, null, null, now, ct);
                await tx.CommitAsync(ct);
                return created || Same(credited, adjustment)
                    ? new AdjustmentOutcome(credited, false, credited.BalanceAfter)
                    : new AdjustmentOutcome(null, true, 0);
            }

            await c.ExecuteAsync(new CommandDefinition(
                "SELECT 1 FROM wallets WHERE user_id = @UserId FOR UPDATE", new { adjustment.UserId }, tx, cancellationToken: ct));
            var existing = await ByDedupeKeyAsync(c, tx, dedupeKey, ct);
            if (existing is not null)
            {
                await tx.RollbackAsync(ct);
                return Same(existing, adjustment) ? new AdjustmentOutcome(existing, false, existing.BalanceAfter) : new AdjustmentOutcome(null, true, 0);
            }

            // Tokens past their expiry leave through their own entry first: an adjustment never takes an expired token.
            await ExpireDueAsync(c, tx, adjustment.UserId, now, onlyIfDue: true, ct);
            var take = -adjustment.Amount;
            var balance = await c.QuerySingleOrDefaultAsync<long?>(new CommandDefinition(
                "UPDATE wallets SET balance = balance - @take, updated_at = @now WHERE user_id = @UserId AND balance >= @take RETURNING balance",
                new { take, now, adjustment.UserId }, tx, cancellationToken: ct));
            if (balance is null)
            {
                var current = await c.QuerySingleAsync<long>(new CommandDefinition(
                    "SELECT balance FROM wallets WHERE user_id = @UserId", new { adjustment.UserId }, tx, cancellationToken: ct));
                await tx.RollbackAsync(ct);
                return new AdjustmentOutcome(null, false, current);
            }
            await SpendLotsAsync(c, tx, adjustment.UserId, take, ct);
            var entry = await c.QuerySingleAsync<LedgerRow>(new CommandDefinition(
                $"""
                INSERT INTO wallet_ledger (user_id, kind, amount, balance_after, reference, reason, dedupe_key, created_at)
                VALUES (@UserId, @kind, @amount, @balance, @reference, @reason, @dedupeKey, @now)
                RETURNING {LedgerColumns}
                """,
                new
                {
                    adjustment.UserId, kind = LedgerKind.Adjustment, amount = adjustment.Amount, balance = balance.Value,
                    reference = adjustment.IdempotencyKey, reason = adjustment.Reason, dedupeKey, now,
                }, tx, cancellationToken: ct));
            await Outbox.EnqueueAsync(c, tx, new TokensClawedBack
            {
                UserId = adjustment.UserId,
                Requested = take,
                Amount = take,
                Shortfall = 0,
                BalanceAfter = balance.Value,
                Reference = adjustment.IdempotencyKey,
                OccurredAt = now,
            }, Outbox.MessageId(dedupeKey, nameof(TokensClawedBack)), ct);
            await tx.CommitAsync(ct);
            return new AdjustmentOutcome(entry, false, balance.Value);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            // The same key, at the same moment: the first one won.
            await using var c = await dataSource.OpenConnectionAsync(ct);
            var existing = await ByDedupeKeyAsync(c, null, dedupeKey, ct);
            return existing is not null && Same(existing, adjustment)
                ? new AdjustmentOutcome(existing, false, existing.BalanceAfter)
                : new AdjustmentOutcome(null, true, 0);
        }
    }

    /// <summary>The ledger entry made under <paramref name="dedupeKey"/>, if any.</summary>
    private static Task<LedgerRow?> ByDedupeKeyAsync(NpgsqlConnection c, NpgsqlTransaction? tx, string dedupeKey, CancellationToken ct) =>
        c.QuerySingleOrDefaultAsync<LedgerRow>(new CommandDefinition(
            $"SELECT {LedgerColumns} FROM wallet_ledger WHERE dedupe_key = @dedupeKey", new { dedupeKey }, tx, cancellationToken: ct));

    private static bool Same(LedgerRow entry, Adjustment adjustment) =>
        entry.UserId == adjustment.UserId && entry.Amount == adjustment.Amount && entry.Kind == LedgerKind.Adjustment;

    private static bool Same(LedgerRow entry, Grant grant) =>
        entry.UserId == grant.UserId && entry.Amount == grant.Amount && entry.Kind == LedgerKind.Grant;

    /// <summary>
    /// Grants a bought pack once per checkout session (the inbox already drops a redelivered message; this also drops the
    /// same purchase re-published under another message id). Returns false when it was granted before.
    /// </summary>
    public async Task<bool> GrantPurchaseAsync(NpgsqlConnection c, NpgsqlTransaction tx, TokenPackPurchased m, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        await EnsureWalletAsync(c, tx, m.UserId, now, ct);
        var pack = catalog.FindPack(m.PackId);
        // As the checkout sold it (0: never); a purchase that does not say (an older checkout) follows the catalog's pack.
        DateTimeOffset? expiresAt = (m.ExpiresAfterDays ?? pack?.ExpiresAfterDays) is { } days and > 0 ? m.OccurredAt.ToUniversalTime().AddDays(days) : null;
        var (entry, created) = await CreditAsync(c, tx, m.UserId, LedgerKind.Purchase, m.Tokens, m.CheckoutSessionId,
            "purchase:" + m.CheckoutSessionId, pack?.Name, expiresAt, m.StripeEventId, now, ct);
        if (!created)
        {
            return false;
        }
        await c.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO wallet_purchases (checkout_session_id, payment_intent_id, user_id, pack_id, tokens, amount, currency, ledger_id, lot_id, created_at)
            VALUES (@CheckoutSessionId, @PaymentIntentId, @UserId, @PackId, @Tokens, @Amount, @Currency, @LedgerId,
                    (SELECT id FROM wallet_lots WHERE ledger_id = @LedgerId), @Now)
            """,
            new { m.CheckoutSessionId, m.PaymentIntentId, m.UserId, m.PackId, m.Tokens, m.Amount, m.Currency, LedgerId = entry.Id, Now = now },
            tx, cancellationToken: ct));
        return true;
    }

    /// <summary>Creates the wallet in its own transaction (with the sign-up grant when it is new).</summary>
    public async Task EnsureWalletAsync(string userId, CancellationToken ct)
    {
        await using var c = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await c.BeginTransactionAsync(ct);
        await EnsureWalletAsync(c, tx, userId, clock.GetUtcNow(), ct);
        await tx.CommitAsync(ct);
    }

    /// <summary>Creates the wallet if it does not exist; the catalog's sign-up grant goes with the creation, so it happens once.</summary>
    private async Task EnsureWalletAsync(NpgsqlConnection c, NpgsqlTransaction tx, string userId, DateTimeOffset now, CancellationToken ct)
    {
        var created = await c.ExecuteAsync(new CommandDefinition(
            "INSERT INTO wallets (user_id, balance, created_at, updated_at) VALUES (@userId, 0, @now, @now) ON CONFLICT (user_id) DO NOTHING",
            new { userId, now }, tx, cancellationToken: ct));
        if (created == 1 && catalog.SignUpGrantTokens > 0)
        {
            await CreditAsync(c, tx, userId, LedgerKind.Grant, catalog.SignUpGrantTokens, "sign-up", "sign-up:" + userId,
                "sign-up grant", null, null, now, ct);
        }
    }

    /// <summary>
    /// Adds tokens under the wallet's row lock: one ledger row, a lot when they expire, and <see cref="TokensGranted"/>
    /// in the outbox. With a dedupe key already in the ledger it changes nothing and returns that entry.
    /// </summary>
    private static async Task<(LedgerRow Entry, bool Created)> CreditAsync(NpgsqlConnection c, NpgsqlTransaction tx, string userId,
        string kind, long amount, string reference, string dedupeKey, string? reason, DateTimeOffset? expiresAt, string? stripeEventId,
        DateTimeOffset now, CancellationToken ct)
    {
        await c.ExecuteAsync(new CommandDefinition(
            "SELECT 1 FROM wallets WHERE user_id = @userId FOR UPDATE", new { userId }, tx, cancellationToken: ct));
        var existing = await ByDedupeKeyAsync(c, tx, dedupeKey, ct);
        if (existing is not null)
        {
            return (existing, false);
        }

        var entry = await CreditEntryAsync(c, tx, userId, kind, amount, reference, reason, expiresAt, dedupeKey, now, ct);
        if (expiresAt is not null)
        {
            await c.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO wallet_lots (user_id, ledger_id, reference, granted, remaining, expires_at)
                VALUES (@userId, @ledgerId, @reference, @amount, @amount, @expiresAt)
                """, new { userId, ledgerId = entry.Id, reference, amount, expiresAt }, tx, cancellationToken: ct));
        }
        await Outbox.EnqueueAsync(c, tx, new TokensGranted
        {
            UserId = userId,
            Amount = amount,
            BalanceAfter = entry.BalanceAfter,
            Kind = kind,
            Reference = reference,
            OccurredAt = now,
            StripeEventId = stripeEventId,
        }, Outbox.MessageId(dedupeKey, nameof(TokensGranted)), ct);
        return (entry, true);
    }

    /// <summary>Adds <paramref name="amount"/> to the balance as one ledger entry of <paramref name="kind"/> (no lot: the caller's part).</summary>
    private static Task<LedgerRow> CreditEntryAsync(NpgsqlConnection c, NpgsqlTransaction tx, string userId, string kind, long amount,
        string reference, string? reason, DateTimeOffset? expiresAt, string dedupeKey, DateTimeOffset now, CancellationToken ct) =>
        c.QuerySingleAsync<LedgerRow>(new CommandDefinition(
            $"""
            WITH w AS (
                UPDATE wallets SET balance = balance + @amount, updated_at = @now WHERE user_id = @userId RETURNING balance
            )
            INSERT INTO wallet_ledger (user_id, kind, amount, balance_after, reference, reason, expires_at, dedupe_key, created_at)
            SELECT @userId, @kind, @amount, w.balance, @reference, @reason, @expiresAt, @dedupeKey, @now FROM w
            RETURNING {LedgerColumns}
            """, new { userId, kind, amount, reference, reason, expiresAt, dedupeKey, now }, tx, cancellationToken: ct));

    // ---------------------------------------------------------------- refunds

    /// <summary>
    /// A pack's payment changed (<see cref="PackPaymentChange"/>: a refund's state, a chargeback opened or closed): the
    /// purchase records the newer state, and its claw-back moves to what that state calls for — the whole pack while a
    /// chargeback stands (open or lost), otherwise the refunded share. Moving up takes tokens back, at most the balance
    /// (the entry records what was called for and the shortfall, tokens already spent, which stays owed); moving down (a
    /// refund that failed, a chargeback won) first forgives what is still owed and gives the rest back as a
    /// <c>refund_reversal</c> entry, into the lots it was taken from. A message older than the recorded state changes nothing.
    /// </summary>
    public async Task FollowPaymentAsync(NpgsqlConnection c, NpgsqlTransaction tx, PackPaymentChange m, CancellationToken ct)
    {
        // The wallet first, then the purchase: the order a return takes (it pays refund debt under the wallet's lock), so
        // a claw-back and a return of the same user never wait for each other in a cycle (a deadlock PostgreSQL aborts).
        await LockWalletAsync(c, tx, m.UserId, ct);
        var p = await c.QuerySingleOrDefaultAsync<PurchaseState>(new CommandDefinition(
                """
                SELECT checkout_session_id AS SessionId, user_id AS UserId, tokens AS Tokens, lot_id AS LotId,
                       clawback_requested AS Requested, clawback_outstanding AS Outstanding, refund_undone AS RefundUndone,
                       refund_amount AS RefundAmount, refund_tokens AS RefundTokens, dispute_status AS DisputeStatus,
                       clawback_floor AS Floor, clawback_moves AS Moves
                FROM wallet_purchases
                WHERE payment_intent_id = @PaymentIntentId OR payment_intent_id = @PaymentId OR checkout_session_id = @PaymentId
                LIMIT 1 FOR UPDATE
                """, new { m.PaymentIntentId, m.PaymentId }, tx, cancellationToken: ct))
            ?? throw new PurchaseNotYetGrantedException(
                $"{m.What} of payment {m.PaymentId}: its pack purchase has not been granted yet; it waits for it.");

        var (refundUndone, refundAmount, refundTokens, disputeStatus) = (p.RefundUndone, p.RefundAmount, p.RefundTokens, p.DisputeStatus);
        if (m.Refund is { } refund)
        {
            if ((refund.Undone, refund.AmountRefunded).CompareTo((p.RefundUndone, p.RefundAmount)) <= 0)
            {
                return; // the same state, or an older one: a later message already moved past it
            }
            (refundUndone, refundAmount) = (refund.Undone, refund.AmountRefunded);
            refundTokens = Clawback.TargetTokens(p.Tokens, refund.AmountPaid, refund.AmountRefunded, refund.Fully);
        }
        else
        {
            var next = Clawback.NextDisputeStatus(p.DisputeStatus, m.DisputeStatus!);
            if (next == p.DisputeStatus)
            {
                return; // already open, or already closed (a closed chargeback is never reopened)
            }
            disputeStatus = next;
        }
        // What was taken before any move was counted (before migration 0005, or by a replica of the previous version during
        // the rollout) has no recorded state: it stays taken.
        var floor = p.Moves == 0 ? Math.Max(p.Floor, p.Requested) : p.Floor;
        await c.ExecuteAsync(new CommandDefinition(
            """
            UPDATE wallet_purchases SET refund_undone = @refundUndone, refund_amount = @refundAmount, refund_tokens = @refundTokens,
                dispute_status = @disputeStatus, clawback_floor = @floor
            WHERE checkout_session_id = @SessionId
            """, new { refundUndone, refundAmount, refundTokens, disputeStatus, floor, p.SessionId }, tx, cancellationToken: ct));

        var (sessionId, userId, tokens, lotId) = (p.SessionId, p.UserId, p.Tokens, p.LotId);
        var now = clock.GetUtcNow();
        // Lock first, read after: a statement that waits for the row lock sees the locked row as committed, but its
        // sub-selects keep the snapshot taken before the wait, so lots a concurrent grant or return added would be missed.
        if (!string.Equals(userId, m.UserId, StringComparison.Ordinal))
        {
            await LockWalletAsync(c, tx, userId, ct); // the purchase's own user (the event names the same one)
        }
        // Lots that ran out go first, as for a debit or a return: the stored balance counts them until the expiry job runs,
        // and a claw-back must not take tokens the user no longer had.
        await ExpireDueAsync(c, tx, userId, now, onlyIfDue: true, ct);
        // Tokens of the pack that expired unused were never the user's to spend: a refund takes back (from the balance, or
        // as a debt) at most the tokens that were not lost that way.
        var expired = lotId is null ? 0L : await c.QuerySingleAsync<long>(new CommandDefinition(
            """
            SELECT COALESCE(-SUM(e.amount), 0)::bigint FROM wallet_lots l
            JOIN wallet_ledger e ON e.user_id = l.user_id AND e.kind = 'expiry' AND e.reference = l.reference
            WHERE l.id = @lotId AND l.expired_at IS NOT NULL
            """, new { lotId }, tx, cancellationToken: ct));
        var target = Math.Max(floor, Math.Min(Clawback.DisputeStands(disputeStatus) ? tokens : refundTokens, tokens - expired));
        if (target == p.Requested)
        {
            return;
        }
        // Keys of the first move are those of the claw-backs made before moves were counted; later ones differ.
        var key = $"{sessionId}#{target}" + (p.Moves == 0 ? "" : $"@{p.Moves}");
        var outstanding = target > p.Requested
            ? await TakeBackAsync(c, tx, p, target, m, key, now, ct)
            : await GiveBackAsync(c, tx, p, target, m, key, now, ct);
        await c.ExecuteAsync(new CommandDefinition(
            """
            UPDATE wallet_purchases SET clawback_requested = @target, clawback_outstanding = @outstanding, clawback_moves = clawback_moves + 1
            WHERE checkout_session_id = @sessionId
            """, new { target, outstanding, sessionId }, tx, cancellationToken: ct));
    }

    /// <summary>Takes back what a higher target adds; returns the purchase's outstanding debt after it.</summary>
    private static async Task<long> TakeBackAsync(NpgsqlConnection c, NpgsqlTransaction tx, PurchaseState p, long target, PackPaymentChange m,
        string key, DateTimeOffset now, CancellationToken ct)
    {
        var userId = p.UserId;
        var requested = target - p.Requested;
        var take = await TakeForClawbackAsync(c, tx, userId, p.SessionId, p.LotId, requested, ct);

        var entry = await RefundEntryAsync(c, tx, userId, take, reference: m.ChargeId, requested,
            $"{m.Describe} for checkout {p.SessionId}", $"refund:{key}", now, ct);
        await Outbox.EnqueueAsync(c, tx, new TokensClawedBack
        {
            UserId = userId,
            Requested = requested,
            Amount = take,
            Shortfall = requested - take,
            BalanceAfter = entry.BalanceAfter,
            Reference = m.ChargeId,
            OccurredAt = now,
            StripeEventId = m.StripeEventId,
        }, Outbox.MessageId(key, nameof(TokensClawedBack)), ct);
        // What could not be taken now stays owed: spent tokens that come back later (a reservation's return) pay it.
        return p.Outstanding + (requested - take);
    }

    /// <summary>
    /// Gives back what a lower target frees: first what is still owed is forgiven, then the rest comes back where it was
    /// taken from — into the expiring lots the claw-backs took it from (with their own expiry: a lot that has expired
    /// meanwhile loses it again at once, through its expiry entry), the rest as tokens that never expire. Returns the
    /// debt after.
    /// </summary>
    private static async Task<long> GiveBackAsync(NpgsqlConnection c, NpgsqlTransaction tx, PurchaseState p, long target, PackPaymentChange m,
        string key, DateTimeOffset now, CancellationToken ct)
    {
        var freed = p.Requested - target;
        var forgiven = Math.Min(freed, p.Outstanding);
        var credit = freed - forgiven;
        if (credit == 0)
        {
            return p.Outstanding - forgiven;
        }
        await GiveBackToClawbackLotsAsync(c, tx, p.SessionId, credit, exceptLotId: null, ct);
        await CreditEntryAsync(c, tx, p.UserId, LedgerKind.RefundReversal, credit, m.ChargeId,
            $"{m.Describe} for checkout {p.SessionId}: tokens given back", expiresAt: null, "refund-reversal:" + key, now, ct);
        await ExpireDueAsync(c, tx, p.UserId, now, onlyIfDue: true, ct);
        await Outbox.EnqueueAsync(c, tx, new TokensGranted
        {
            UserId = p.UserId,
            Amount = credit,
            BalanceAfter = await BalanceAsync(c, tx, p.UserId, ct), // after what expired again at once
            Kind = LedgerKind.RefundReversal,
            Reference = m.ChargeId,
            OccurredAt = now,
            StripeEventId = m.StripeEventId,
        }, Outbox.MessageId("refund-reversal:" + key, nameof(TokensGranted)), ct);
        return p.Outstanding - forgiven;
    }

    /// <summary>
    /// Takes up to <paramref name="atMost"/> tokens, never more than the balance, for the claw-back of purchase
    /// <paramref name="sessionId"/>: from the pack's own lot first, then from the tokens that never expire, then from other
    /// lots soonest-expiring first — so the lots never hold more than the balance, and another pack's (or a promotion's)
    /// expiring tokens are taken only when nothing else is left. Records what came from each lot; returns how many it took
    /// (the caller writes the ledger entry). A claw-back and a return paying its debt take alike.
    /// </summary>
    private static async Task<long> TakeForClawbackAsync(NpgsqlConnection c, NpgsqlTransaction tx, string userId, string sessionId, long? ownLotId,
        long atMost, CancellationToken ct)
    {
        var (balance, lotsTotal) = await c.QuerySingleAsync<(long Balance, long LotsTotal)>(new CommandDefinition(
            """
            SELECT balance, (SELECT COALESCE(SUM(remaining), 0)::bigint FROM wallet_lots WHERE user_id = @userId AND remaining > 0)
            FROM wallets WHERE user_id = @userId
            """, new { userId }, tx, cancellationToken: ct));
        var take = Math.Min(atMost, balance);
        if (take <= 0)
        {
            return 0;
        }
        var fromOwnLot = 0L;
        if (ownLotId is { } lotId)
        {
            fromOwnLot = await c.QuerySingleAsync<long>(new CommandDefinition(
                """
                WITH old AS (SELECT id, remaining FROM wallet_lots WHERE id = @lotId)
                UPDATE wallet_lots l SET remaining = l.remaining - LEAST(old.remaining, @take) FROM old WHERE l.id = old.id
                RETURNING LEAST(old.remaining, @take)
                """, new { lotId, take }, tx, cancellationToken: ct));
            await RecordClawbackLotsAsync(c, tx, sessionId, [(lotId, fromOwnLot)], ct);
        }
        await RecordClawbackLotsAsync(c, tx, sessionId,
            await SpendLotsAsync(c, tx, userId, Clawback.FromOtherLots(take, balance, lotsTotal, fromOwnLot), ct), ct);
        return take;
    }

    /// <summary>
    /// Tokens a return put back into the lot of a pack whose refund was taken from other tokens — the pack's own were out
    /// on a reservation then, so the claw-back took tokens that never expire, or another lot's, in their place — are the
    /// refunded pack's: the claw-back takes them now and gives back what it took in their place (another lot's first, as
    /// it took those last). Without it the user kept the refunded pack's tokens, with its expiry, instead of their own (or,
    /// the pack's lot having expired, lost their own). Returns how many tokens were swapped.
    /// </summary>
    private static async Task<long> SwapIntoClawbackAsync(NpgsqlConnection c, NpgsqlTransaction tx, long lotId, long gave, CancellationToken ct)
    {
        var p = await c.QuerySingleOrDefaultAsync<(string? SessionId, long Elsewhere, long Remaining)>(new CommandDefinition(
            """
            SELECT p.checkout_session_id,
                   p.clawback_requested - p.clawback_outstanding
                       - COALESCE((SELECT t.amount FROM wallet_clawback_lots t WHERE t.checkout_session_id = p.checkout_session_id AND t.lot_id = @lotId), 0),
                   (SELECT l.remaining FROM wallet_lots l WHERE l.id = @lotId)
            FROM wallet_purchases p WHERE p.lot_id = @lotId AND p.clawback_requested > p.clawback_outstanding
            FOR UPDATE OF p
            """, new { lotId }, tx, cancellationToken: ct));
        var swap = Math.Min(Math.Min(gave, p.Remaining), p.Elsewhere);
        if (p.SessionId is not { } sessionId || swap <= 0)
        {
            return 0;
        }
        await c.ExecuteAsync(new CommandDefinition(
            "UPDATE wallet_lots SET remaining = remaining - @swap WHERE id = @lotId", new { swap, lotId }, tx, cancellationToken: ct));
        await RecordClawbackLotsAsync(c, tx, sessionId, [(lotId, swap)], ct);
        // What no other lot takes back is back among the tokens that never expire: the balance is unchanged, the lots hold less.
        await GiveBackToClawbackLotsAsync(c, tx, sessionId, swap, exceptLotId: lotId, ct);
        return swap;
    }

    /// <summary>
    /// Puts up to <paramref name="amount"/> tokens back into the lots the purchase's claw-backs took them from (but
    /// <paramref name="exceptLotId"/>), latest-expiring first, with their own expiry (a lot that has expired meanwhile
    /// loses them again through its expiry entry), and lowers the record of what was taken from each.
    /// </summary>
    private static async Task GiveBackToClawbackLotsAsync(NpgsqlConnection c, NpgsqlTransaction tx, string sessionId, long amount, long? exceptLotId,
        CancellationToken ct)
    {
        var lots = await c.QueryAsync<(long LotId, long Took)>(new CommandDefinition(
            """
            SELECT t.lot_id, t.amount FROM wallet_clawback_lots t JOIN wallet_lots l ON l.id = t.lot_id
            WHERE t.checkout_session_id = @sessionId AND t.lot_id <> COALESCE(@exceptLotId, -1) AND t.amount > 0
            ORDER BY l.expires_at DESC, l.id DESC
            """, new { sessionId, exceptLotId }, tx, cancellationToken: ct));
        var left = amount;
        foreach (var (lotId, took) in lots)
        {
            var give = Math.Min(left, took);
            if (give == 0)
            {
                break;
            }
            await c.ExecuteAsync(new CommandDefinition(
                """
                UPDATE wallet_lots SET remaining = remaining + @give, expired_at = NULL WHERE id = @lotId;
                UPDATE wallet_clawback_lots SET amount = amount - @give WHERE checkout_session_id = @sessionId AND lot_id = @lotId;
                """, new { give, lotId, sessionId }, tx, cancellationToken: ct));
            left -= give;
        }
    }

    /// <summary>Adds what a claw-back (or a return paying its debt) took from each expiring lot to the purchase's record.</summary>
    private static async Task RecordClawbackLotsAsync(NpgsqlConnection c, NpgsqlTransaction tx, string sessionId,
        IEnumerable<(long LotId, long Took)> lots, CancellationToken ct)
    {
        foreach (var (lotId, took) in lots.Where(l => l.Took > 0))
        {
            await c.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO wallet_clawback_lots AS t (checkout_session_id, lot_id, amount) VALUES (@sessionId, @lotId, @took)
                ON CONFLICT (checkout_session_id, lot_id) DO UPDATE SET amount = t.amount + EXCLUDED.amount
                """, new { sessionId, lotId, took }, tx, cancellationToken: ct));
        }
    }

    private sealed record PurchaseState(string SessionId, string UserId, long Tokens, long? LotId, long Requested, long Outstanding,
        int RefundUndone, long RefundAmount, long RefundTokens, string? DisputeStatus, long Floor, int Moves);

    private static Task LockWalletAsync(NpgsqlConnection c, NpgsqlTransaction tx, string userId, CancellationToken ct) =>
        c.ExecuteAsync(new CommandDefinition("SELECT 1 FROM wallets WHERE user_id = @userId FOR UPDATE", new { userId }, tx, cancellationToken: ct));

    // ---------------------------------------------------------------- expiry

    /// <summary>
    /// Expires the due lots of up to <paramref name="batch"/> wallets, each in its own transaction; returns how many it
    /// expired. A wallet that fails is reported to <paramref name="failed"/> and skipped, so it cannot hold up the others.
    /// </summary>
    public async Task<int> ExpireDueAsync(int batch, Action<string, Exception> failed, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        List<string> users;
        await using (var c = await dataSource.OpenConnectionAsync(ct))
        {
            users = (await c.QueryAsync<string>(new CommandDefinition(
                "SELECT DISTINCT user_id FROM wallet_lots WHERE remaining > 0 AND expires_at <= @now ORDER BY user_id LIMIT @batch",
                new { now, batch }, cancellationToken: ct))).ToList();
        }
        var expired = 0;
        foreach (var userId in users)
        {
            try
            {
                await using var c = await dataSource.OpenConnectionAsync(ct);
                await using var tx = await c.BeginTransactionAsync(ct);
                await ExpireDueAsync(c, tx, userId, now, onlyIfDue: false, ct);
                await tx.CommitAsync(ct);
                expired++;
            }
            catch (Exception ex) when (!ct.IsCancellationRequested)
            {
                failed(userId, ex);
            }
        }
        return expired;
    }

    /// <summary>Each due lot leaves through its own <c>expiry</c> entry, under the wallet's row lock.</summary>
    private static async Task ExpireDueAsync(NpgsqlConnection c, NpgsqlTransaction tx, string userId, DateTimeOffset now, bool onlyIfDue, CancellationToken ct)
    {
        if (onlyIfDue && !await c.QuerySingleAsync<bool>(new CommandDefinition(
                "SELECT EXISTS (SELECT 1 FROM wallet_lots WHERE user_id = @userId AND remaining > 0 AND expires_at <= @now)",
                new { userId, now }, tx, cancellationToken: ct)))
        {
            return;
        }
        await c.ExecuteAsync(new CommandDefinition(
            "SELECT 1 FROM wallets WHERE user_id = @userId FOR UPDATE", new { userId }, tx, cancellationToken: ct));
        var due = await c.QueryAsync<(long Id, long Remaining, string Reference)>(new CommandDefinition(
            """
            WITH due AS (
                SELECT id, remaining FROM wallet_lots WHERE user_id = @userId AND remaining > 0 AND expires_at <= @now ORDER BY expires_at, id
            )
            UPDATE wallet_lots l SET remaining = 0, expired_at = @now FROM due WHERE l.id = due.id
            RETURNING l.id, due.remaining, l.reference
            """, new { userId, now }, tx, cancellationToken: ct));
        foreach (var lot in due.OrderBy(d => d.Id))
        {
            await c.ExecuteAsync(new CommandDefinition(
                """
                WITH w AS (
                    UPDATE wallets SET balance = balance - @remaining, updated_at = @now WHERE user_id = @userId RETURNING balance
                )
                INSERT INTO wallet_ledger (user_id, kind, amount, balance_after, reference, reason, created_at)
                SELECT @userId, 'expiry', -@remaining, w.balance, @reference, 'expired', @now FROM w
                """, new { userId, remaining = lot.Remaining, reference = lot.Reference, now }, tx, cancellationToken: ct));
        }
    }

    /// <summary>Takes <paramref name="amount"/> from the user's expiring lots, soonest-expiring first; returns what it took from each.</summary>
    private static async Task<IReadOnlyList<(long LotId, long Took)>> SpendLotsAsync(NpgsqlConnection c, NpgsqlTransaction tx, string userId,
        long amount, CancellationToken ct)
    {
        if (amount <= 0)
        {
            return [];
        }
        return (await c.QueryAsync<(long LotId, long Took)>(new CommandDefinition(
            """
            WITH ordered AS (
                SELECT id, remaining, SUM(remaining) OVER (ORDER BY expires_at, id) - remaining AS before
                FROM wallet_lots WHERE user_id = @userId AND remaining > 0
            )
            UPDATE wallet_lots l SET remaining = l.remaining - LEAST(o.remaining, @amount - o.before)
            FROM ordered o WHERE l.id = o.id AND o.before < @amount
            RETURNING l.id, LEAST(o.remaining, @amount - o.before)
            """, new { userId, amount }, tx, cancellationToken: ct))).ToList();
    }
}

/// <summary>A refund arrived before its purchase was granted; the message is retried (for minutes) until it is.</summary>
public sealed class PurchaseNotYetGrantedException(string message) : Billing.ServiceDefaults.Messaging.RetryLaterException(message);
