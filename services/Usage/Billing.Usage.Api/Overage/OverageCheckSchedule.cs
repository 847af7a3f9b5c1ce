using Billing.ServiceDefaults;
using Dapper;
using Npgsql;

namespace Billing.Usage.Api.Overage;

/// <summary>
/// Runs the <see cref="OverageCheck"/> on its own every <c>Usage:OverageCheckIntervalMinutes</c> (360; 0 = only on demand),
/// with its defaults (the last 7 days up to 10 minutes ago, the 1,000 customer meters with the latest overage): once per
/// interval across replicas and restarts (a conditional upsert of its row in <c>usage_job_runs</c>). Each
/// difference is logged as an error and counted in <c>billing.usage.overage.differences</c>, so an alert fires while
/// there is still time to bill the units Stripe rejected.
/// </summary>
public sealed class OverageCheckSchedule(OverageCheck check, NpgsqlDataSource dataSource, TimeProvider clock, IConfiguration configuration,
    ILogger<OverageCheckSchedule> logger) : BackgroundService
{
    private const string Job = "overage-check";

    private TimeSpan Interval => TimeSpan.FromMinutes(Math.Max(0, configuration.GetValue("Usage:OverageCheckIntervalMinutes", 360)));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (Interval == TimeSpan.Zero)
        {
            return;
        }
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await RunIfDueAsync(stoppingToken);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogWarning(ex, "The overage check against Stripe's meters failed; it is tried again in a minute");
            }
            try
            {
                // Whether it is due is looked at every minute (Usage:OverageCheckPollSeconds).
                await Task.Delay(TimeSpan.FromSeconds(Math.Clamp(configuration.GetValue("Usage:OverageCheckPollSeconds", 60), 1, 86_400)), stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Runs the check if no replica ran it within the interval; null when it was not due (or another runs it).</summary>
    public async Task<OverageCheck.OverageCheckResult?> RunIfDueAsync(CancellationToken cancellationToken)
    {
        // One statement claims the run: a replica that races another for it waits for the other's row lock, then finds
        // the run already taken (its WHERE no longer holds) — so once per interval across replicas and restarts.
        var now = clock.GetUtcNow();
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            var claimed = await connection.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO usage_job_runs (job, last_run_at) VALUES (@job, @now)
                ON CONFLICT (job) DO UPDATE SET last_run_at = EXCLUDED.last_run_at WHERE usage_job_runs.last_run_at <= @due
                """, new { job = Job, now = now.UtcDateTime, due = (now - Interval).UtcDateTime }, cancellationToken: cancellationToken));
            if (claimed == 0)
            {
                return null;
            }
        }

        var (from, to, _) = check.Range(null, null);
        var result = await check.RunAsync(from, to, null, OverageCheck.MaxLimit, cancellationToken);
        foreach (var d in result.Differences)
        {
            logger.LogError("Billed overage of customer {CustomerId} (users {UserIds}) on {EventName} from {From:u} to {To:u}: Usage reported {BillingUnits}, " +
                "Stripe's meter {StripeMeterId} counted {StripeUnits}{Error}",
                d.CustomerId, string.Join(", ", d.UserIds), d.EventName, result.From, result.To, d.BillingUnits, d.StripeMeterId, d.StripeUnits,
                d.Error is null ? "" : " (Stripe: " + d.Error + ")");
            BillingMetrics.RecordOverageDifference(d.EventName);
        }
        logger.LogInformation("Overage check from {From:u} to {To:u}: {Checked} customer meters compared with Stripe, {Differences} differ{More}",
            result.From, result.To, result.Checked, result.Differences.Count, result.More ? " (more were not checked)" : "");
        return result;
    }
}
