using Billing.ServiceDefaults.Stripe;
using Billing.Usage.Api.Spending;
using Dapper;
using Npgsql;
using Stripe;
using Stripe.Billing;

namespace Billing.Usage.Api.Overage;

/// <summary>
/// Reconciles billed overage with what Stripe's meters counted. Stripe answers a meter event 200 and validates it
/// afterwards: an event it then rejects (an error report such as <c>meter_event_customer_not_found</c> or
/// <c>no_meter</c>) was taken by the <see cref="OverageReporter"/> as billed, and is billed nowhere. So for each Stripe
/// customer and meter event name with overage reported in [from, to), this compares the units Usage sent (by the time
/// each event carried) with Stripe's meter event summary over the same range; any difference — fewer units in Stripe
/// (rejected events), more (events from elsewhere), or Stripe refusing to say — is reported. One Stripe call per pair,
/// the pairs with the latest overage first, at most <c>limit</c>.
/// </summary>
public sealed class OverageCheck(NpgsqlDataSource dataSource, IStripeClient stripe, StripeCalls calls, UsageRetention retention, TimeProvider clock)
{
    /// <summary>Stripe aggregates meter events asynchronously; by default the check stops this long before now.</summary>
    public static readonly TimeSpan Settle = TimeSpan.FromMinutes(10);

    /// <summary>By default the check covers this long before its end.</summary>
    public static readonly TimeSpan DefaultSpan = TimeSpan.FromDays(7);

    public const int MaxLimit = 1000;

    public sealed record OverageDifference(string CustomerId, IReadOnlyList<string> UserIds, string Meter, string EventName, string? StripeMeterId,
        long BillingUnits, decimal? StripeUnits, string? Error);

    public sealed record OverageCheckResult(bool Ok, DateTime From, DateTime To, int Checked, int Matched, bool More, IReadOnlyList<OverageDifference> Differences,
        DateTime CheckedAt);

    /// <summary>The range a request names, on the minute boundaries Stripe's summaries need, or why it cannot be checked.</summary>
    public (DateTimeOffset From, DateTimeOffset To, string? Error) Range(DateTimeOffset? from, DateTimeOffset? to)
    {
        // No overage is reported with a time to come, and Stripe's summaries need not be asked about one: at most now.
        var now = clock.GetUtcNow();
        var end = to is { } t ? CeilMinute(t < now ? t : now) : FloorMinute(now - Settle);
        var kept = retention.RetentionDays > 0 ? retention.Cutoff : DateTimeOffset.MinValue;
        var start = from is { } f ? FloorMinute(f) : end - DefaultSpan > kept ? end - DefaultSpan : kept; // kept: a midnight
        if (start >= end)
        {
            return (start, end, "\"from\" must be before \"to\".");
        }
        if (start < kept)
        {
            return (start, end, $"Reported overage is kept {retention.RetentionDays} days: \"from\" must be on or after {retention.Cutoff:yyyy-MM-ddTHH:mm:ssZ}.");
        }
        return (start, end, null);
    }

    public async Task<OverageCheckResult> RunAsync(DateTimeOffset from, DateTimeOffset to, string? userId, int limit, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        List<Reported> reported;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            // The time each event carried is report_at (fixed before the first attempt; set on every row reported since
            // migration 0009), else the spend's; Stripe took whole seconds, and the range's ends are whole minutes. One
            // pair per customer and event name, as Stripe's meter sums them (catalog meters that were billed under the same
            // name at another time are listed together, comma-separated).
            reported = (await connection.QueryAsync<Reported>(new CommandDefinition(
                """
                SELECT s.stripe_customer_id AS CustomerId, string_agg(DISTINCT o.meter, ',' ORDER BY o.meter) AS Meter, o.event_name AS EventName,
                       array_agg(DISTINCT o.user_id ORDER BY o.user_id) AS UserIds, sum(o.quantity)::bigint AS Units
                FROM usage_overage o JOIN usage_subjects s ON s.user_id = o.user_id
                WHERE o.reported_at IS NOT NULL AND s.stripe_customer_id IS NOT NULL
                  AND coalesce(o.report_at, o.occurred_at) >= @from AND coalesce(o.report_at, o.occurred_at) < @to
                  AND (@userId::text IS NULL OR o.user_id = @userId)
                GROUP BY s.stripe_customer_id, o.event_name
                ORDER BY max(coalesce(o.report_at, o.occurred_at)) DESC, s.stripe_customer_id, o.event_name
                LIMIT @take
                """,
                new { from = from.UtcDateTime, to = to.UtcDateTime, userId, take = limit + 1 }, cancellationToken: cancellationToken))).ToList();
        }
        var more = reported.Count > limit;
        if (more)
        {
            reported.RemoveAt(limit);
        }

        var meters = reported.Count == 0 ? new Dictionary<string, Meter>() : await MetersByEventNameAsync(cancellationToken);
        var differences = new OverageDifference?[reported.Count];
        await Parallel.ForEachAsync(Enumerable.Range(0, reported.Count), new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = cancellationToken },
            async (i, ct) => differences[i] = await CompareAsync(reported[i], meters, from, to, ct));
        var found = differences.OfType<OverageDifference>().ToList();
        return new OverageCheckResult(found.Count == 0, from.UtcDateTime, to.UtcDateTime, reported.Count, reported.Count - found.Count, more, found, now);
    }

    private async Task<OverageDifference?> CompareAsync(Reported pair, IReadOnlyDictionary<string, Meter> meters, DateTimeOffset from, DateTimeOffset to,
        CancellationToken cancellationToken)
    {
        OverageDifference Differs(string? meterId, decimal? stripeUnits, string? error) =>
            new(pair.CustomerId, pair.UserIds, pair.Meter, pair.EventName, meterId, pair.Units, stripeUnits, error);

        if (!meters.TryGetValue(pair.EventName, out var meter))
        {
            return Differs(null, null, $"Stripe has no billing meter with event_name {pair.EventName}: it counted none of these events.");
        }
        if (meter.DefaultAggregation?.Formula is { } formula && formula != "sum")
        {
            return Differs(meter.Id, null, $"Stripe's meter {meter.Id} aggregates by {formula}, not sum: its summary cannot be compared.");
        }
        try
        {
            var summaries = await calls.RunAsync(ct => new MeterEventSummaryService(stripe).ListAsync(meter.Id, new MeterEventSummaryListOptions
            {
                Customer = pair.CustomerId,
                StartTime = from.UtcDateTime,
                EndTime = to.UtcDateTime,
            }, cancellationToken: ct), cancellationToken);
            var counted = summaries.Data.Sum(s => (decimal)s.AggregatedValue);
            return counted == pair.Units ? null : Differs(meter.Id, counted, null);
        }
        catch (StripeException ex)
        {
            return Differs(meter.Id, null, ex.Message);
        }
    }

    /// <summary>Each event name's meter: the active one, else the latest (as Stripe routes an event by its name).</summary>
    private async Task<Dictionary<string, Meter>> MetersByEventNameAsync(CancellationToken cancellationToken) =>
        (await StripeMeters.ListAsync(stripe, calls, cancellationToken)).GroupBy(m => m.EventName)
            .ToDictionary(g => g.Key, g => g.OrderByDescending(m => m.Status == "active").ThenByDescending(m => m.Created).First());

    private static DateTimeOffset FloorMinute(DateTimeOffset at) =>
        new(at.UtcTicks - at.UtcTicks % TimeSpan.TicksPerMinute, TimeSpan.Zero);

    private static DateTimeOffset CeilMinute(DateTimeOffset at) => FloorMinute(at.AddTicks(TimeSpan.TicksPerMinute - 1));

    private sealed class Reported
    {
        public string CustomerId { get; set; } = "";
        public string Meter { get; set; } = "";
        public string EventName { get; set; } = "";
        public string[] UserIds { get; set; } = [];
        public long Units { get; set; }
    }
}
