using Billing.Payments.Api.Persistence;
using Billing.Payments.Core.Webhooks;
using Billing.ServiceDefaults.Stripe;
using Dapper;
using Npgsql;
using Stripe;

namespace Billing.Payments.Api.Webhooks;

/// <summary>What one reconciliation run saw and healed.</summary>
public sealed record ReconcileResult(bool Ran, int Scanned, int Recovered, DateTimeOffset? Cursor, IReadOnlyList<string> RecoveredIds);

/// <summary>How often and how far back reconciliation looks.</summary>
public sealed class ReconcileOptions
{
    /// <summary>Seconds between background runs (0 = only on demand).</summary>
    public int IntervalSeconds { get; set; } = 300;
    /// <summary>On the first run, how far back to look (Stripe keeps events 30 days).</summary>
    public int FirstRunDays { get; set; } = 3;
    /// <summary>Each run re-reads this much before the cursor: Stripe's list is not strictly ordered at the edge.</summary>
    public int OverlapSeconds { get; set; } = 600;
    /// <summary>How far back to ask Stripe for events whose delivery failed.</summary>
    public int FailedDeliveryDays { get; set; } = 3;
}

/// <summary>
/// Heals missed webhooks (ARCHITECTURE.md rule 5): reads Stripe's event list since the last cursor, plus the events
/// whose delivery failed, and stores every one the ingestor never saw, exactly as a webhook would have; the processor
/// then handles it like any other. Storing is idempotent on Stripe's event id, so a run can never double anything.
/// One run at a time across replicas (advisory lock).
/// </summary>
public sealed class Reconciler(IStripeClient stripe, StripeCalls calls, EventStore events, NpgsqlDataSource dataSource,
    ReconcileOptions options, TimeProvider clock, ILogger<Reconciler> logger)
{
    private const long LockKey = 0x5245_434F_4E43; // "RECONC"

    public async Task<ReconcileResult> RunAsync(CancellationToken ct)
    {
        // One run at a time: a transaction-scoped lock, held by this run's open transaction (which also moves the cursor at
        // the end). Transaction-scoped, so it holds behind a pooler in transaction mode too, where a session lock could stay
        // on a server connection another client gets next.
        await using var lockConnection = await dataSource.OpenConnectionAsync(ct);
        await using var run = await lockConnection.BeginTransactionAsync(ct);
        if (!await lockConnection.ExecuteScalarAsync<bool>(new CommandDefinition("SELECT pg_try_advisory_xact_lock(@key)", new { key = LockKey }, run, cancellationToken: ct)))
        {
            return new ReconcileResult(false, 0, 0, null, []);
        }
        var cursor = await lockConnection.ExecuteScalarAsync<DateTimeOffset?>(new CommandDefinition("SELECT cursor_at FROM reconcile_state WHERE id = 1", transaction: run, cancellationToken: ct));
        var since = (cursor ?? clock.GetUtcNow().AddDays(-options.FirstRunDays)).AddSeconds(-options.OverlapSeconds);

        var seen = new Dictionary<string, Event>(StringComparer.Ordinal);
        // Only the types Billing handles (the webhook endpoint's list): the account's other events are not missed
        // webhooks, and storing them would bury the real misses in the report.
        // Stripe takes at most 20 types per list request.
        foreach (var types in StripeEventTypes.Handled.Order(StringComparer.Ordinal).Chunk(20).Select(c => c.ToList()))
        {
            await foreach (var e in ListAsync(new EventListOptions
            {
                Created = new DateRangeOptions { GreaterThanOrEqual = since.UtcDateTime }, Types = types, Limit = 100,
            }, ct))
            {
                seen.TryAdd(e.Id, e);
            }
            await foreach (var e in ListAsync(new EventListOptions
            {
                DeliverySuccess = false,
                Created = new DateRangeOptions { GreaterThanOrEqual = clock.GetUtcNow().AddDays(-options.FailedDeliveryDays).UtcDateTime },
                Types = types,
                Limit = 100,
            }, ct))
            {
                seen.TryAdd(e.Id, e);
            }
        }

        var recovered = new List<string>();
        foreach (var e in seen.Values.OrderBy(e => e.Created))
        {
            var raw = e.RawJsonElement?.GetRawText();
            var (envelope, error) = raw is null ? (null, "no raw JSON") : EnvelopeReader.Read(raw);
            if (envelope is null)
            {
                logger.LogWarning("Reconciliation skipped Stripe event {Id}: {Error}", e.Id, error);
                continue;
            }
            if (await events.StoreAsync(envelope, raw!, "reconcile", ct) && StripeEventTypes.Handled.Contains(envelope.Type))
            {
                recovered.Add(envelope.Id);
            }
        }

        DateTimeOffset? newest = seen.Count == 0 ? cursor : new DateTimeOffset(DateTime.SpecifyKind(seen.Values.Max(e => e.Created), DateTimeKind.Utc));
        if (cursor is { } c && newest < c)
        {
            newest = c;
        }
        await lockConnection.ExecuteAsync(new CommandDefinition(
            "UPDATE reconcile_state SET cursor_at = @newest, last_run_at = now(), last_scanned = @scanned, last_found = @found WHERE id = 1",
            new { newest, scanned = seen.Count, found = recovered.Count }, run, cancellationToken: ct));
        await run.CommitAsync(ct);
        if (recovered.Count > 0)
        {
            logger.LogWarning("Reconciliation recovered {Count} Stripe event(s) the webhook never delivered: {Ids}", recovered.Count, string.Join(", ", recovered.Take(20)));
        }
        return new ReconcileResult(true, seen.Count, recovered.Count, newest, recovered);
    }

    private async IAsyncEnumerable<Event> ListAsync(EventListOptions options, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        var service = new EventService(stripe);
        while (true)
        {
            var page = await calls.RunAsync(c => service.ListAsync(options, cancellationToken: c), ct);
            foreach (var e in page.Data)
            {
                yield return e;
            }
            if (!page.HasMore || page.Data.Count == 0)
            {
                yield break;
            }
            options.StartingAfter = page.Data[^1].Id;
        }
    }
}

/// <summary>Runs reconciliation in the background every <see cref="ReconcileOptions.IntervalSeconds"/>.</summary>
public sealed class ReconcileJob(Reconciler reconciler, ReconcileOptions options, ILogger<ReconcileJob> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.IntervalSeconds <= 0)
        {
            return;
        }
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(options.IntervalSeconds));
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                await reconciler.RunAsync(stoppingToken);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogWarning(ex, "Reconciliation failed; the next run tries again");
            }
        }
    }
}
