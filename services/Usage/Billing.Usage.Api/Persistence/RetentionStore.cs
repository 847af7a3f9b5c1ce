using Dapper;
using Npgsql;

namespace Billing.Usage.Api.Persistence;

/// <summary>What one retention pass removed.</summary>
public sealed record RetentionResult(long Consumptions, long Reservations, long Counters, long Overage, long Announcements = 0);

/// <summary>Removes what Usage no longer needs after the retention (see migration 0006), in short transactions.</summary>
public sealed class RetentionStore(NpgsqlDataSource dataSource)
{
    private const int Batch = 5000;

    public async Task<RetentionResult> RetireAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        var args = new { before = before.ToUniversalTime(), limit = Batch };
        var consumptions = await RepeatAsync("SELECT usage_retire(@before, @limit)", args, cancellationToken);
        // Settled reservations (a return still owed to Wallet keeps its row), counters of windows long over that a later
        // window of the same meter has replaced, and overage Stripe has confirmed, and published announcements whose window's counter is gone.
        var reservations = await RepeatAsync(
            """
            WITH gone AS (
                DELETE FROM reservations WHERE reservation_id = ANY (ARRAY(
                    SELECT reservation_id FROM reservations
                    WHERE created_at < @before AND status IN ('committed', 'released', 'expired', 'refused') AND NOT return_due LIMIT @limit))
                RETURNING 1)
            SELECT count(*)::integer FROM gone
            """, args, cancellationToken);
        var counters = await RepeatAsync(
            """
            WITH gone AS (
                DELETE FROM usage_counters WHERE ctid = ANY (ARRAY(
                    SELECT c.ctid FROM usage_counters c
                    WHERE c.window_end < @before
                      -- never a user's latest window of a meter: an unrenewed period stays current past its end
                      AND EXISTS (SELECT 1 FROM usage_counters n WHERE n.user_id = c.user_id AND n.meter = c.meter AND n.window_start > c.window_start)
                    LIMIT @limit))
                RETURNING 1)
            SELECT count(*)::integer FROM gone
            """, args, cancellationToken);
        var overage = await RepeatAsync(
            """
            WITH gone AS (
                DELETE FROM usage_overage WHERE consumption_id = ANY (ARRAY(
                    SELECT consumption_id FROM usage_overage WHERE reported_at IS NOT NULL AND occurred_at < @before LIMIT @limit))
                RETURNING 1)
            SELECT count(*)::integer FROM gone
            """, args, cancellationToken);
        var announcements = await RepeatAsync(
            """
            WITH gone AS (
                DELETE FROM usage_announcements WHERE ctid = ANY (ARRAY(
                    SELECT a.ctid FROM usage_announcements a
                    WHERE a.published_at IS NOT NULL AND a.window_end < @before
                      AND NOT EXISTS (SELECT 1 FROM usage_counters c WHERE c.user_id = a.user_id AND c.meter = a.meter AND c.window_start = a.window_start)
                    LIMIT @limit))
                RETURNING 1)
            SELECT count(*)::integer FROM gone
            """, args, cancellationToken);
        return new RetentionResult(consumptions, reservations, counters, overage, announcements);
    }

    private async Task<long> RepeatAsync(string sql, object args, CancellationToken cancellationToken)
    {
        long total = 0;
        while (true)
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            var removed = await connection.ExecuteScalarAsync<int>(new CommandDefinition(sql, args, cancellationToken: cancellationToken));
            total += removed;
            if (removed < Batch)
            {
                return total;
            }
        }
    }
}
