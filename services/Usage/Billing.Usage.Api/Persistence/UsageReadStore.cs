using Dapper;
using Npgsql;

namespace Billing.Usage.Api.Persistence;

/// <summary>Reads for the usage and entitlement views: counters, balance, daily history. Straight into DTOs.</summary>
public sealed class UsageReadStore(NpgsqlDataSource dataSource)
{
    /// <summary>The used amount of each (meter, window start); missing counters are 0.</summary>
    public async Task<IReadOnlyDictionary<(string Meter, DateTimeOffset Start), long>> UsedAsync(string userId,
        IReadOnlyList<(string Meter, DateTimeOffset Start)> windows, CancellationToken cancellationToken)
    {
        if (windows.Count == 0)
        {
            return new Dictionary<(string, DateTimeOffset), long>();
        }
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(string Meter, DateTime Start, long Used)>(new CommandDefinition(
            """
            SELECT c.meter, c.window_start, c.used
            FROM usage_counters c
            JOIN unnest(@meters, @starts) AS w(meter, window_start) ON w.meter = c.meter AND w.window_start = c.window_start
            WHERE c.user_id = @userId
            """,
            new
            {
                userId,
                meters = windows.Select(w => w.Meter).ToArray(),
                starts = windows.Select(w => w.Start.UtcDateTime).ToArray(),
            },
            cancellationToken: cancellationToken));
        return rows.ToDictionary(r => (r.Meter, new DateTimeOffset(DateTime.SpecifyKind(r.Start, DateTimeKind.Utc), TimeSpan.Zero)), r => r.Used);
    }

    public async Task<long> TokenBalanceAsync(string userId, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<long?>(new CommandDefinition(
            "SELECT balance FROM token_balances WHERE user_id = @userId", new { userId }, cancellationToken: cancellationToken)) ?? 0;
    }

    /// <summary>Allowed quantities per UTC day and meter in [from, to): the consumptions kept, plus the daily totals of the retired ones.</summary>
    public async Task<IReadOnlyList<(DateOnly Day, string Meter, long Quantity)>> DailyAsync(string userId, DateTimeOffset from, DateTimeOffset to,
        CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(DateTime Day, string Meter, long Quantity)>(new CommandDefinition(
            """
            SELECT day::timestamp, meter, sum(quantity)::bigint AS quantity
            FROM (
                SELECT (created_at AT TIME ZONE 'UTC')::date AS day, meter, quantity
                FROM consumptions
                WHERE user_id = @userId AND allowed AND created_at >= @from AND created_at < @to
                UNION ALL
                -- Days past the retention, rolled up (whole UTC days).
                SELECT day, meter, quantity
                FROM usage_daily
                WHERE user_id = @userId AND day >= (@from AT TIME ZONE 'UTC')::date AND day < (@to AT TIME ZONE 'UTC')::date
            ) spent
            GROUP BY 1, 2
            ORDER BY 1, 2
            """,
            new { userId, from = from.ToUniversalTime(), to = to.ToUniversalTime() }, cancellationToken: cancellationToken));
        return rows.Select(r => (DateOnly.FromDateTime(r.Day), r.Meter, r.Quantity)).ToList();
    }
}
