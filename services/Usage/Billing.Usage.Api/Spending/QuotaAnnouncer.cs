using Billing.Contracts;
using Billing.ServiceDefaults.Messaging;
using Billing.Usage.Core.Consuming;
using Dapper;
using Npgsql;

namespace Billing.Usage.Api.Spending;

/// <summary>
/// Publishes the QuotaLow and QuotaExhausted that the group-committed spends wrote as rows of
/// <c>usage_announcements</c>: moves them into the outbox in one transaction (insert the messages, mark the rows
/// published), so each is published once and none is lost, whatever crashes when. The rows stay until the window's
/// counter is retired, so a threshold crossed again in the same window (usage went down and up) announces nothing new. Woken by the writer right after a commit that
/// announced something, and every few seconds anyway (a crash between the commit and the wake-up, another replica's rows).
/// </summary>
public sealed class QuotaAnnouncer(NpgsqlDataSource dataSource, IConfiguration configuration, ILogger<QuotaAnnouncer> logger) : BackgroundService
{
    private const int Chunk = 200;
    private readonly SemaphoreSlim _wake = new(0, 1);

    /// <summary>Asks for a run now (cheap; many calls make one run).</summary>
    public void Wake()
    {
        try
        {
            _wake.Release();
        }
        catch (SemaphoreFullException)
        {
            // A run is already due.
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = TimeSpan.FromMilliseconds(Math.Max(50, configuration.GetValue("Usage:AnnouncerIntervalMs", 2000)));
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                while (await PublishAsync(stoppingToken) == Chunk)
                {
                }
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogWarning(ex, "Quota announcements could not be moved to the outbox; retrying");
            }
            try
            {
                await _wake.WaitAsync(interval, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Moves up to <see cref="Chunk"/> announcements into the outbox; returns how many.</summary>
    public async Task<int> PublishAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var rows = (await connection.QueryAsync<Announcement>(new CommandDefinition(
            """
            UPDATE usage_announcements a SET published_at = now()
              FROM (SELECT user_id, meter, window_start, kind, quota_limit FROM usage_announcements WHERE published_at IS NULL
                     ORDER BY occurred_at LIMIT @Chunk FOR UPDATE SKIP LOCKED) picked
             WHERE a.user_id = picked.user_id AND a.meter = picked.meter AND a.window_start = picked.window_start AND a.kind = picked.kind
               AND a.quota_limit = picked.quota_limit
            RETURNING a.user_id AS UserId, a.meter AS Meter, a.window_start AS WindowStart, a.window_end AS WindowEnd,
                      a.kind AS Kind, a.quota_limit AS QuotaLimit, a.used AS Used, a.occurred_at AS OccurredAt
            """, new { Chunk }, transaction, cancellationToken: cancellationToken))).ToList();
        foreach (var a in rows)
        {
            if (a.Kind == "low")
            {
                await QuotaAnnouncements.EnqueueLowAsync(connection, transaction, a.UserId, a.Meter, a.WindowStart, a.WindowEnd, a.QuotaLimit, a.Used, a.OccurredAt);
            }
            else
            {
                await QuotaAnnouncements.EnqueueExhaustedAsync(connection, transaction, a.UserId, a.Meter, a.WindowStart, a.WindowEnd, a.QuotaLimit, a.OccurredAt);
            }
        }
        await transaction.CommitAsync(cancellationToken);
        return rows.Count;
    }

    private sealed record Announcement(string UserId, string Meter, DateTimeOffset WindowStart, DateTimeOffset WindowEnd, string Kind,
        long QuotaLimit, long Used, DateTimeOffset OccurredAt);
}

/// <summary>
/// QuotaLow (80 %) and QuotaExhausted, once per window and limit (an upgrade within the window announces the new limit's
/// thresholds too): the outbox row's id is derived from the window and the limit.
/// </summary>
internal static class QuotaAnnouncements
{
    /// <summary>
    /// Records what a spend from <paramref name="before"/> to <paramref name="after"/> crossed as announcements (once per
    /// window, limit and kind, like <c>usage_consume_many</c> does); the <see cref="QuotaAnnouncer"/> publishes them. True when
    /// there is something new to publish.
    /// </summary>
    public static async Task<bool> RecordAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string userId, string meter,
        DateTimeOffset windowStart, DateTimeOffset windowEnd, long limit, long before, long after, DateTimeOffset now)
    {
        var recorded = 0;
        if (QuotaThresholds.CrossedLow(before, after, limit))
        {
            recorded += await RecordAsync("low");
        }
        if (QuotaThresholds.Exhausted(before, after, limit))
        {
            recorded += await RecordAsync("exhausted");
        }
        return recorded > 0;

        Task<int> RecordAsync(string kind) => connection.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO usage_announcements (user_id, meter, window_start, window_end, kind, quota_limit, used, occurred_at)
            VALUES (@userId, @meter, @windowStart, @windowEnd, @kind, @limit, @after, @now)
            ON CONFLICT DO NOTHING
            """, new { userId, meter, windowStart = windowStart.ToUniversalTime(), windowEnd = windowEnd.ToUniversalTime(), kind, limit, after,
                now = now.ToUniversalTime() }, transaction));
    }

    public static Task<bool> EnqueueLowAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string userId, string meter,
        DateTimeOffset windowStart, DateTimeOffset windowEnd, long limit, long used, DateTimeOffset now) =>
        Outbox.EnqueueAsync(connection, transaction, new QuotaLow
        {
            UserId = userId,
            Meter = meter,
            Limit = limit,
            Used = used,
            WindowStart = windowStart.ToUniversalTime(),
            ResetsAt = windowEnd.ToUniversalTime(),
            OccurredAt = now.ToUniversalTime(),
        }, Outbox.MessageId(Cause(userId, meter, windowStart, limit), nameof(QuotaLow)));

    public static Task<bool> EnqueueExhaustedAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string userId, string meter,
        DateTimeOffset windowStart, DateTimeOffset windowEnd, long limit, DateTimeOffset now) =>
        Outbox.EnqueueAsync(connection, transaction, new QuotaExhausted
        {
            UserId = userId,
            Meter = meter,
            Limit = limit,
            WindowStart = windowStart.ToUniversalTime(),
            ResetsAt = windowEnd.ToUniversalTime(),
            OccurredAt = now.ToUniversalTime(),
        }, Outbox.MessageId(Cause(userId, meter, windowStart, limit), nameof(QuotaExhausted)));

    private static string Cause(string userId, string meter, DateTimeOffset windowStart, long limit) =>
        $"{userId}|{meter}|{windowStart.UtcDateTime:O}|{limit}";
}
