using Billing.ServiceDefaults.Stripe;
using Dapper;
using Npgsql;
using Stripe;
using Stripe.Billing;

namespace Billing.Usage.Api.Overage;

/// <summary>
/// Reports billed overage (<c>usage_overage</c>, written in the spend's own transaction) to Stripe Billing Meter events,
/// each with the consumption id as its <c>identifier</c> (Stripe counts an identifier once) and an idempotency key that
/// names the consumption and the event's time, so a retry sends the same request. It
/// takes up to 100 pending rows at a time, oldest first, sends them a few at once through <see cref="StripeCalls"/>
/// (Polly retries), and backs a failing row off for at most a minute: overage near a period's end is therefore
/// reported within seconds, well inside the hour Stripe leaves between a period's end and finalizing its invoice, and
/// each event carries the time of the spend, so it lands in the period it belongs to. Overage that could not be reported
/// in that hour (Stripe or this service down) would land in a period whose invoice is final and be billed nowhere: it is
/// reported with the current time instead, so the next invoice carries it (<c>Usage:OverageLateAfterMinutes</c>, 50).
/// </summary>
public sealed class OverageReporter(NpgsqlDataSource dataSource, IStripeClient stripe, StripeCalls calls, TimeProvider clock,
    IConfiguration configuration, ILogger<OverageReporter> logger) : BackgroundService
{
    private const int BatchSize = 100;
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(60);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = TimeSpan.FromMilliseconds(Math.Clamp(configuration.GetValue("Usage:OverageIntervalMs", 1000), 50, 60_000));
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                while (await ReportDueAsync(stoppingToken) == BatchSize)
                {
                }
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogWarning(ex, "Reporting overage failed; trying again shortly");
            }
            try
            {
                await Task.Delay(interval, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Reports the rows that are due; returns how many it tried.</summary>
    public async Task<int> ReportDueAsync(CancellationToken cancellationToken)
    {
        List<PendingOverage> due;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            due = (await connection.QueryAsync<PendingOverage>(new CommandDefinition(
                """
                SELECT o.consumption_id AS ConsumptionId, o.user_id AS UserId, o.event_name AS EventName, o.quantity AS Quantity,
                       o.occurred_at AS OccurredAt, o.report_at AS ReportAt, o.attempts AS Attempts, s.stripe_customer_id AS CustomerId,
                       s.period_start AS PeriodStart, s.period_end AS PeriodEnd
                FROM usage_overage o LEFT JOIN usage_subjects s ON s.user_id = o.user_id
                WHERE o.reported_at IS NULL AND o.next_attempt_at <= @now
                ORDER BY o.next_attempt_at
                LIMIT @limit
                """,
                new { now = clock.GetUtcNow().ToUniversalTime(), limit = BatchSize }, cancellationToken: cancellationToken))).ToList();
        }
        await Parallel.ForEachAsync(due, new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = cancellationToken },
            async (row, ct) => await ReportAsync(row, ct));
        return due.Count;
    }

    private async Task ReportAsync(PendingOverage row, CancellationToken cancellationToken)
    {
        string? error;
        try
        {
            if (row.CustomerId is not { Length: > 0 } customer)
            {
                error = "The user's Stripe customer is not known yet.";
            }
            else
            {
                var identifier = row.ConsumptionId.ToString();
                var timestamp = await FixTimestampAsync(row, cancellationToken);
                await calls.RunAsync(ct => new MeterEventService(stripe).CreateAsync(new MeterEventCreateOptions
                {
                    EventName = row.EventName,
                    Identifier = identifier,
                    Payload = new Dictionary<string, string>
                    {
                        ["stripe_customer_id"] = customer,
                        ["value"] = row.Quantity.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    },
                    Timestamp = timestamp,
                }, new RequestOptions { IdempotencyKey = $"usage-overage-{identifier}-{new DateTimeOffset(timestamp).ToUnixTimeSeconds()}" }, ct), cancellationToken);
                error = null;
            }
        }
        catch (StripeException ex) when (ex.Message.Contains("already exists", StringComparison.OrdinalIgnoreCase))
        {
            error = null; // an earlier attempt reached Stripe: the identifier makes it the same event
        }
        catch (Exception ex) when (ex is StripeException or StripeUnavailableException && !cancellationToken.IsCancellationRequested)
        {
            error = ex.Message;
        }

        var now = clock.GetUtcNow().ToUniversalTime();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        if (error is null)
        {
            await connection.ExecuteAsync(new CommandDefinition(
                "UPDATE usage_overage SET reported_at = @now, attempts = attempts + 1, last_error = NULL WHERE consumption_id = @id",
                new { now, id = row.ConsumptionId }, cancellationToken: cancellationToken));
            return;
        }
        var backoff = TimeSpan.FromSeconds(Math.Min(MaxBackoff.TotalSeconds, Math.Pow(2, Math.Min(row.Attempts, 10))));
        logger.LogWarning("Overage {Id} of {UserId} not reported (attempt {Attempt}): {Error}", row.ConsumptionId, row.UserId, row.Attempts + 1, error);
        await connection.ExecuteAsync(new CommandDefinition(
            "UPDATE usage_overage SET attempts = attempts + 1, last_error = @error, next_attempt_at = @next WHERE consumption_id = @id",
            new { error, next = now + backoff, id = row.ConsumptionId }, cancellationToken: cancellationToken));
    }

    private sealed class PendingOverage
    {
        public Guid ConsumptionId { get; set; }
        public string UserId { get; set; } = "";
        public string EventName { get; set; } = "";
        public long Quantity { get; set; }
        public DateTime OccurredAt { get; set; }
        public DateTime? ReportAt { get; set; }
        public int Attempts { get; set; }
        public string? CustomerId { get; set; }
        public DateTime? PeriodStart { get; set; }
        public DateTime? PeriodEnd { get; set; }
    }

    private TimeSpan LateAfter => TimeSpan.FromMinutes(Math.Clamp(configuration.GetValue("Usage:OverageLateAfterMinutes", 50), 1, 24 * 60));

    /// <summary>
    /// The time the meter event carries, stored on the row before it is sent so that every retry sends the same body
    /// (under an idempotency key that names it): the spend's, unless the spend belongs to a billing period that ended more
    /// than <see cref="LateAfter"/> ago (Stripe finalizes that period's invoice about an hour after it ends; the period
    /// Usage knows may be that one still, when the renewal's events are late) — then now, so
    /// it is billed on the next invoice rather than on none. A time fixed earlier that has since become late is replaced
    /// the same way; the identifier (the consumption id) still keeps Stripe from counting it twice should an earlier
    /// attempt have arrived after all.
    /// </summary>
    private async Task<DateTime> FixTimestampAsync(PendingOverage row, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        var fixedAt = DateTime.SpecifyKind(row.ReportAt ?? row.OccurredAt, DateTimeKind.Utc);
        // Where the spend's period ended: at the start of the period Usage knows, if it is from before it; else at that
        // period's end (also when Usage has not heard of a renewal yet — Stripe unreachable then held Payments up too).
        var start = row.PeriodStart is { } s ? DateTime.SpecifyKind(s, DateTimeKind.Utc) : (DateTime?)null;
        var end = row.PeriodEnd is { } e ? DateTime.SpecifyKind(e, DateTimeKind.Utc) : (DateTime?)null;
        var periodEnded = fixedAt < start ? start : fixedAt < end ? end : null;
        if (periodEnded is { } ended && now >= ended + LateAfter)
        {
            logger.LogWarning("Overage {Id} of {UserId} from {OccurredAt:u} is reported after its period's invoice was finalized: it goes on the next invoice",
                row.ConsumptionId, row.UserId, DateTime.SpecifyKind(row.OccurredAt, DateTimeKind.Utc));
            fixedAt = new DateTime(now.Ticks - now.Ticks % TimeSpan.TicksPerSecond, DateTimeKind.Utc);
        }
        else if (row.ReportAt is not null)
        {
            return fixedAt;
        }
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition("UPDATE usage_overage SET report_at = @fixedAt WHERE consumption_id = @id",
            new { fixedAt, id = row.ConsumptionId }, cancellationToken: cancellationToken));
        return fixedAt;
    }
}
