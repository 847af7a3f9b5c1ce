using Billing.Payments.Api.Persistence;
using Billing.ServiceDefaults.Stripe;
using Dapper;
using Npgsql;

namespace Billing.Payments.Api.Webhooks;

/// <summary>How the processor retries and how wide it runs.</summary>
public sealed class WebhookProcessorOptions
{
    /// <summary>
    /// Failed attempts before an event is marked <c>failed</c> (listed and replayable by admins). Attempts that failed because
    /// Stripe was unavailable (5xx, timeouts, 429, connection errors) do not count: those retry until Stripe answers.
    /// </summary>
    public int MaxAttempts { get; set; } = 12;
    /// <summary>Events taken per round.</summary>
    public int BatchSize { get; set; } = 200;
    /// <summary>Different Stripe objects processed at once; one object's events are always one after another.</summary>
    public int Parallelism { get; set; } = 4;
    /// <summary>Longest wait between two attempts of one event.</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromMinutes(10);
    /// <summary>How long to wait for a new event's NOTIFY before looking for due retries anyway.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>
/// Processes stored Stripe events after they were acknowledged. Events about one Stripe object (one subscription and
/// its invoices and checkout) are serialised by a transaction-scoped advisory lock on their order key, across threads and
/// replicas. Each event is processed in one transaction with its effects and outgoing messages; a failure rolls it all
/// back and schedules a retry with exponential back-off; an event that keeps failing for another reason than Stripe being
/// unavailable is marked failed.
/// </summary>
public sealed class WebhookProcessor(NpgsqlDataSource dataSource, EventStore events, StripeEventHandler handler,
    WebhookProcessorOptions options, ILogger<WebhookProcessor> logger) : BackgroundService
{
    /// <summary>How far back events an older release ignored are taken up again (Stripe redelivers for 3 days).</summary>
    public static readonly TimeSpan RequeueWindow = TimeSpan.FromDays(3);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            if (await events.RequeueNewlyHandledAsync(RequeueWindow, stoppingToken) is var requeued and > 0)
            {
                logger.LogWarning("{Count} Stripe events stored as ignored (by an older release) are of a type handled now; queued again", requeued);
            }
        }
        catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
        {
            logger.LogWarning(ex, "Could not look for ignored events of newly handled types; the next start tries again");
        }
        NpgsqlConnection? listener = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (listener is null)
                {
                    listener = await dataSource.OpenConnectionAsync(stoppingToken);
                    await using var listen = new NpgsqlCommand($"LISTEN {EventStore.Channel}", listener);
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                }
                var processed = await ProcessDueAsync(stoppingToken);
                if (processed == 0)
                {
                    await listener.WaitAsync(options.PollInterval, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                logger.LogWarning(ex, "Webhook processing loop failed; retrying");
                if (listener is not null)
                {
                    await listener.DisposeAsync();
                    listener = null;
                }
                await Task.Delay(options.PollInterval, stoppingToken).ContinueWith(_ => { }, CancellationToken.None);
            }
        }
        if (listener is not null)
        {
            await listener.DisposeAsync();
        }
    }

    /// <summary>Processes what is due now; returns how many events it looked at.</summary>
    public async Task<int> ProcessDueAsync(CancellationToken ct)
    {
        var due = await events.DueAsync(options.BatchSize, ct);
        if (due.Count == 0)
        {
            return 0;
        }
        var groups = due.GroupBy(e => e.OrderKey).Select(g => g.Select(e => e.Id).ToList()).ToList();
        await Parallel.ForEachAsync(groups, new ParallelOptions { MaxDegreeOfParallelism = options.Parallelism, CancellationToken = ct },
            async (ids, token) =>
            {
                foreach (var id in ids)
                {
                    await ProcessOneAsync(id, token);
                }
            });
        return due.Count;
    }

    private async Task ProcessOneAsync(string id, CancellationToken ct)
    {
        // The Stripe event's id is the correlation id of everything its processing publishes: one id to quote from the
        // webhook through every service that reacts to it.
        Billing.ServiceDefaults.CorrelationId.Current = Billing.ServiceDefaults.CorrelationId.IsWellFormed(id) ? id : null;
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        StoredEvent? stored;
        try
        {
            await using var tx = await connection.BeginTransactionAsync(ct);
            stored = await connection.QuerySingleOrDefaultAsync<StoredEvent>(new CommandDefinition(
                """
                SELECT id AS Id, type AS Type, order_key AS OrderKey, object_id AS ObjectId, stripe_created AS StripeCreated, attempts AS Attempts
                FROM stripe_events WHERE id = @id AND status = 'pending' FOR UPDATE SKIP LOCKED
                """, new { id }, tx, cancellationToken: ct));
            if (stored is null)
            {
                return; // done meanwhile, or another replica has it
            }
            await connection.ExecuteAsync(new CommandDefinition(
                "SELECT pg_advisory_xact_lock(hashtextextended(@key, 0))", new { key = stored.OrderKey }, tx, cancellationToken: ct));

            await handler.HandleAsync(connection, tx, stored, ct);
            await connection.ExecuteAsync(new CommandDefinition(
                "UPDATE stripe_events SET status = 'processed', processed_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = @id",
                new { id }, tx, cancellationToken: ct));
            await tx.CommitAsync(ct);
        }
        catch (Exception ex) when (!ct.IsCancellationRequested)
        {
            await RecordFailureAsync(id, ex, ct);
        }
    }

    /// <summary>
    /// What admins see as the event's last error. A Stripe answer that was not Stripe's error shape (an HTML page, a
    /// truncated body) is cut short: its body may carry customer data and is of no use in a list.
    /// </summary>
    private static string Describe(Exception error) => error switch
    {
        global::Stripe.StripeException { StripeError.Type: null } s =>
            $"StripeException (HTTP {(int)s.HttpStatusCode}): {(s.Message.Length > 200 ? s.Message[..200] + "…" : s.Message)}",
        _ => error.GetType().Name + ": " + error.Message,
    };

    /// <summary>
    /// Records a failed attempt of a pending event. An event that is no longer pending is left alone: when the commit's
    /// answer is lost (the connection broke after the server committed), the event is processed and must stay so.
    /// </summary>
    internal async Task RecordFailureAsync(string id, Exception error, CancellationToken ct)
    {
        // Stripe down, timing out or rate limiting says nothing about the event, and neither does an event that waits for
        // another one (a refund whose payment is not recorded yet): it waits at the longest back-off for as long as that
        // lasts (ARCHITECTURE.md rule 5) instead of being parked for an admin. Only other failures use up the attempts.
        // The exponent is capped: an outage of days must not overflow the interval.
        var transient = error is StripeUnavailableException or Billing.ServiceDefaults.Messaging.RetryLaterException || StripeCalls.IsTransient(error);
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        var recorded = await connection.QuerySingleOrDefaultAsync<(int, int)?>(new CommandDefinition(
            """
            UPDATE stripe_events SET attempts = attempts + 1, last_error = left(@error, 2000),
                failures = failures + CASE WHEN @transient THEN 0 ELSE 1 END,
                status = CASE WHEN NOT @transient AND failures + 1 >= @max THEN 'failed' ELSE 'pending' END,
                next_attempt_at = now() + LEAST(make_interval(secs => power(2, LEAST(attempts, 30))), make_interval(secs => @maxBackoff))
            WHERE id = @id AND status = 'pending'
            RETURNING attempts, failures
            """, new { id, error = Describe(error), transient, max = options.MaxAttempts, maxBackoff = options.MaxBackoff.TotalSeconds },
            cancellationToken: ct));
        if (recorded is not var (attempts, failures))
        {
            logger.LogWarning(error, "Stripe event {Id} failed after it left 'pending' (its commit may have succeeded); its state is kept", id);
            return;
        }
        if (!transient && failures >= options.MaxAttempts)
        {
            Billing.ServiceDefaults.BillingMetrics.RecordFailedEvent("webhook", error.GetType().Name);
            logger.LogError(error, "Stripe event {Id} failed {Attempts} times; marked failed (replay: POST /api/admin/webhook-events/{Id}/replay)", id, attempts, id);
        }
        else if (transient && attempts >= options.MaxAttempts)
        {
            logger.LogError(error, "Stripe event {Id} has waited {Attempts} attempts (Stripe unreachable, or an event it needs not applied yet); still retrying every {MaxBackoff}",
                id, attempts, options.MaxBackoff);
        }
        else
        {
            logger.LogWarning(error, "Stripe event {Id} failed (attempt {Attempts}); will retry", id, attempts);
        }
    }
}
