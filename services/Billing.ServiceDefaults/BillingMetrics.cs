using System.Diagnostics.Metrics;

namespace Billing.ServiceDefaults;

/// <summary>
/// Billing's own instruments (meter <see cref="MeterName"/>, exported with every <c>Billing.*</c> meter). The services
/// call the <c>Record…</c> methods where the thing happens; the outbox backlog and the bus's consume results are
/// observed by ServiceDefaults itself.
/// </summary>
public static class BillingMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = BillingTelemetry.Prefix + ".Platform";

    private static readonly Meter Meter = new(MeterName);

    private static readonly Counter<long> Consumes = Meter.CreateCounter<long>(
        "billing.usage.consumes", "{consume}", "Consume decisions, by meter and result (quota, tokens, unlimited, or the refusal code).");

    private static readonly Histogram<double> ConsumeDuration = Meter.CreateHistogram<double>(
        "billing.usage.consume.duration", "s", "How long one consume decision took, end to end inside Usage.");

    private static readonly Histogram<double> WebhookIngestLag = Meter.CreateHistogram<double>(
        "billing.webhooks.ingest_lag", "s", "From Stripe creating an event to Billing storing it durably.");

    private static readonly Counter<long> FailedEvents = Meter.CreateCounter<long>(
        "billing.events.failed", "{event}", "Events that could not be processed: webhook events marked failed, messages whose consumer faulted.");

    private static readonly Counter<long> MessagesConsumed = Meter.CreateCounter<long>(
        "billing.messages.consumed", "{message}", "Integration events handled by a consumer, by message type and result (ok, fault).");

    private static readonly Histogram<double> MessageConsumeDuration = Meter.CreateHistogram<double>(
        "billing.messages.consume.duration", "s", "From receiving an integration event to its consumer finishing.");

    private static readonly Counter<long> OverageDifferences = Meter.CreateCounter<long>(
        "billing.usage.overage.differences", "{difference}",
        "Customer meters whose billed overage Usage reported differs from what Stripe's meter counted, each time a scheduled check finds one.");

    /// <summary>Usage: a scheduled overage check found a customer meter whose reported overage Stripe did not count as sent.</summary>
    public static void RecordOverageDifference(string eventName) =>
        OverageDifferences.Add(1, new KeyValuePair<string, object?>("event_name", eventName));

    /// <summary>Usage: one consume decision. <paramref name="result"/> is the source when allowed, else the refusal code.</summary>
    public static void RecordConsume(string meter, string result, TimeSpan elapsed)
    {
        var tags = new KeyValuePair<string, object?>[] { new("meter", meter), new("result", result) };
        Consumes.Add(1, tags);
        ConsumeDuration.Record(elapsed.TotalSeconds, tags);
    }

    /// <summary>Payments: a webhook event was stored (<paramref name="created"/> is Stripe's <c>created</c>).</summary>
    public static void RecordWebhookIngested(string eventType, DateTimeOffset created, DateTimeOffset storedAt) =>
        WebhookIngestLag.Record(Math.Max(0, (storedAt - created).TotalSeconds), new KeyValuePair<string, object?>("type", eventType));

    /// <summary>An event that will not be processed without help (<paramref name="source"/>: <c>webhook</c> or <c>consumer</c>).</summary>
    public static void RecordFailedEvent(string source, string eventType) =>
        FailedEvents.Add(1, new KeyValuePair<string, object?>("source", source), new KeyValuePair<string, object?>("type", eventType));

    internal static void RecordMessageConsumed(string service, string messageType, bool ok, TimeSpan elapsed)
    {
        var tags = new KeyValuePair<string, object?>[] { new("service", service), new("type", messageType), new("result", ok ? "ok" : "fault") };
        MessagesConsumed.Add(1, tags);
        MessageConsumeDuration.Record(elapsed.TotalSeconds, tags);
    }

    internal static ObservableGauge<long> CreateBacklogGauge(Func<IEnumerable<Measurement<long>>> observe) =>
        Meter.CreateObservableGauge("billing.outbox.backlog", observe, "{message}", "Outbox rows not yet published to RabbitMQ.");

    internal static ObservableGauge<double> CreateBacklogAgeGauge(Func<IEnumerable<Measurement<double>>> observe) =>
        Meter.CreateObservableGauge("billing.outbox.oldest_unsent_age", observe, "s", "Age of the oldest outbox row not yet published.");
}
