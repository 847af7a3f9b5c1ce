using Billing.Usage.Api.Persistence;

namespace Billing.Usage.Api.Spending;

/// <summary>
/// Keeps Usage's tables the size of the retention, not of all history (see migration 0006): every
/// <c>Usage:RetentionIntervalMinutes</c> (60) it retires what is older than <c>Usage:RetentionDays</c> (35, counted back from
/// UTC midnight; 0 keeps everything): consumptions roll up into per-day totals, settled reservations, counters of windows
/// over and reported overage go. An idempotency key is therefore remembered for the retention.
/// </summary>
public sealed class UsageRetention(RetentionStore store, TimeProvider clock, IConfiguration configuration, ILogger<UsageRetention> logger)
    : BackgroundService
{
    /// <summary>Days kept (0: everything, for ever); at least 2 otherwise.</summary>
    public int RetentionDays { get; } = configuration.GetValue("Usage:RetentionDays", 35) switch
    {
        <= 0 => 0,
        1 => 2,
        var days => Math.Min(days, 36_500),
    };

    /// <summary>The first instant kept: UTC midnight, <see cref="RetentionDays"/> days back.</summary>
    public DateTimeOffset Cutoff => new(clock.GetUtcNow().UtcDateTime.Date.AddDays(-RetentionDays), TimeSpan.Zero);

    /// <summary>One pass; null when retention is off.</summary>
    public async Task<RetentionResult?> RunOnceAsync(CancellationToken cancellationToken)
    {
        if (RetentionDays == 0)
        {
            return null;
        }
        var result = await store.RetireAsync(Cutoff, cancellationToken);
        if (result.Consumptions + result.Reservations + result.Counters + result.Overage + result.Announcements > 0)
        {
            logger.LogInformation("Retention before {Cutoff:u}: {Consumptions} consumptions rolled up into daily totals, {Reservations} reservations, " +
                "{Counters} counters, {Overage} reported overage and {Announcements} announcements removed",
                Cutoff, result.Consumptions, result.Reservations, result.Counters, result.Overage, result.Announcements);
        }
        return result;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = TimeSpan.FromMinutes(Math.Clamp(configuration.GetValue("Usage:RetentionIntervalMinutes", 60), 1, 24 * 60));
        // Not at start-up: a restart should not compete with the first requests.
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(interval, stoppingToken);
                await RunOnceAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                logger.LogWarning(ex, "The retention pass failed; trying again at the next one");
            }
        }
    }
}
