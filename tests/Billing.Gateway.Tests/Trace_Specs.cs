using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net.Http.Headers;
using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Messaging;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using OpenTelemetry.Trace;

namespace Billing.Gateway.Tests;

/// <summary>A message only this test publishes.</summary>
public sealed record TraceProbeHappened(string UserId, DateTimeOffset OccurredAt);

public sealed class TraceProbeConsumer : IConsumer<TraceProbeHappened>
{
    public static readonly System.Collections.Concurrent.ConcurrentDictionary<string, TaskCompletionSource<ActivityTraceId>> Seen = new();

    public Task Consume(ConsumeContext<TraceProbeHappened> context)
    {
        Seen.GetOrAdd(context.Message.UserId, _ => new TaskCompletionSource<ActivityTraceId>(TaskCreationOptions.RunContinuationsAsynchronously))
            .TrySetResult(Activity.Current?.TraceId ?? default);
        return Task.CompletedTask;
    }
}

/// <summary>
/// One request through the gateway (YARP) into a service that writes an outbox row; the relay publishes it on the
/// real RabbitMQ and a consumer handles it: every span, in both hosts, belongs to one trace.
/// </summary>
[TestFixture]
[NonParallelizable]
public class One_trace_from_the_gateway_to_the_consumer
{
    private WebApplication _service = null!;
    private GatewayFactory _gateway = null!;
    private readonly List<Activity> _gatewaySpans = [];
    private readonly List<Activity> _serviceSpans = [];

    [OneTimeSetUp]
    public async Task Start()
    {
        var cs = TestEnvironment.Database("gateway_trace");
        await DatabaseMigrator.MigrateAsync(cs, typeof(DatabaseMigrator).Assembly, NullLogger.Instance);

        var builder = WebApplication.CreateBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Configuration["BILLING_JWT_SIGNING_KEY"] = TestEnvironment.JwtSigningKey;
        builder.Configuration["BILLING_TRACING"] = "on"; // spans without an OTLP endpoint: this test reads them in memory
        builder.Configuration["ConnectionStrings:Database"] = cs;
        builder.Configuration["RabbitMq:Host"] = TestEnvironment.RabbitHost;
        builder.Configuration["RabbitMq:Port"] = TestEnvironment.RabbitPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        builder.Configuration["RabbitMq:QueuePrefix"] = TestEnvironment.RunId + "-";
        builder.AddServiceDefaults("trace-probe");
        builder.AddBillingDatabase(typeof(DatabaseMigrator).Assembly);
        builder.AddBillingBus("gateway-trace", bus => bus.AddConsumer<TraceProbeConsumer>());
        builder.Services.AddSingleton(new OutboxRelayOptions { PollInterval = TimeSpan.FromMilliseconds(200), PublishTimeout = TimeSpan.FromSeconds(5) });
        builder.Services.ConfigureOpenTelemetryTracerProvider(t => t.AddInMemoryExporter(_serviceSpans));
        _service = builder.Build();
        _service.UseServiceDefaults();
        _service.MapPost("/api/trace-probe", async (HttpContext http, NpgsqlDataSource db) =>
        {
            var user = http.User.UserId()!;
            await using var connection = await db.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            await Outbox.EnqueueAsync(connection, tx, new TraceProbeHappened(user, DateTimeOffset.UtcNow));
            await tx.CommitAsync();
            return Results.Ok(new { queued = true });
        }).RequireAuthorization(BillingPolicies.User);
        await _service.StartAsync();

        _gateway = new GatewayFactory(new Uri(_service.Urls.First()), new Dictionary<string, string?>
        {
            ["ReverseProxy:Routes:trace-probe:ClusterId"] = "subscriptions",
            ["ReverseProxy:Routes:trace-probe:AuthorizationPolicy"] = "user",
            ["ReverseProxy:Routes:trace-probe:Match:Path"] = "/api/trace-probe",
            ["BILLING_TRACING"] = "on",
        }, services => services.ConfigureOpenTelemetryTracerProvider(t => t.AddInMemoryExporter(_gatewaySpans)));
        _gateway.CreateClient().Dispose();
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _gateway.DisposeAsync();
        await _service.StopAsync();
        await _service.DisposeAsync();
    }

    private IReadOnlyList<Activity> Spans()
    {
        lock (_gatewaySpans)
        {
            lock (_serviceSpans)
            {
                return _gatewaySpans.Concat(_serviceSpans).Distinct().ToList();
            }
        }
    }

    [Test]
    public async Task Shares_one_trace_id_across_gateway_service_RabbitMQ_and_consumer()
    {
        var user = "u-trace-" + Guid.NewGuid().ToString("N")[..8];
        var seen = TraceProbeConsumer.Seen.GetOrAdd(user, _ => new TaskCompletionSource<ActivityTraceId>(TaskCreationOptions.RunContinuationsAsynchronously));
        var client = _gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/trace-probe") { Content = JsonContent.Create(new { }) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.User(user));
        using var response = await client.SendAsync(request);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());

        var consumerTrace = await seen.Task.WaitAsync(TimeSpan.FromSeconds(30));
        // Spans are exported when they end; the consume span ends just after the consumer returns.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        IReadOnlyList<Activity> trace;
        do
        {
            await Task.Delay(100);
            trace = Spans().Where(a => a.TraceId == consumerTrace).ToList();
        }
        while (!trace.Any(a => a.Kind == ActivityKind.Consumer) && DateTime.UtcNow < deadline);

        var describe = string.Join("\n", trace.Select(a => $"{a.Kind} {a.Source.Name} {a.DisplayName}"));
        var root = trace.SingleOrDefault(a => a.ParentSpanId == default);
        Assert.That(root, Is.Not.Null, "one root span:\n" + describe);
        Assert.That((root!.Kind, root.Source.Name), Is.EqualTo((ActivityKind.Server, "Microsoft.AspNetCore")), "the gateway's request is the root");
        Assert.That(trace.Count(a => a.Kind == ActivityKind.Server && a.Source.Name == "Microsoft.AspNetCore"), Is.EqualTo(2), "gateway and service:\n" + describe);
        Assert.That(trace.Any(a => a.Source.Name == "Yarp.ReverseProxy"), "YARP's forwarder:\n" + describe);
        Assert.That(trace.Any(a => a.Kind == ActivityKind.Client && a.Source.Name == "System.Net.Http"), "the proxied call:\n" + describe);
        Assert.That(trace.Any(a => a.Kind == ActivityKind.Producer && a.Source.Name == "Billing.Outbox"), "the relay's publish:\n" + describe);
        Assert.That(trace.Any(a => a.Kind == ActivityKind.Consumer && a.Source.Name == "MassTransit"), "the consumer:\n" + describe);
        Assert.That(root.GetTagItem(CorrelationId.SpanTag), Is.EqualTo(response.Headers.GetValues(CorrelationId.Header).Single()));
    }

    [Test]
    public async Task Reports_the_outbox_backlog_and_consumes_by_result()
    {
        var measurements = new System.Collections.Concurrent.ConcurrentBag<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == BillingMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => measurements.Add((i.Name, v, Tags(tags))));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => measurements.Add((i.Name, v, Tags(tags))));
        listener.Start();

        var user = "u-metrics-" + Guid.NewGuid().ToString("N")[..8];
        var seen = TraceProbeConsumer.Seen.GetOrAdd(user, _ => new TaskCompletionSource<ActivityTraceId>(TaskCreationOptions.RunContinuationsAsynchronously));
        var client = _gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/trace-probe") { Content = JsonContent.Create(new { }) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.User(user));
        (await client.SendAsync(request)).EnsureSuccessStatusCode();
        await seen.Task.WaitAsync(TimeSpan.FromSeconds(30));

        var monitor = _service.Services.GetRequiredService<OutboxBacklogMonitor>();
        await monitor.SampleAsync(CancellationToken.None);
        await Task.Delay(300);
        listener.RecordObservableInstruments();

        Assert.That(measurements.Any(m => m.Name == "billing.messages.consumed" && (string?)m.Tags["type"] == nameof(TraceProbeHappened)
            && (string?)m.Tags["result"] == "ok"), "a consume counted by result");
        Assert.That(measurements.Any(m => m.Name == "billing.messages.consume.duration"), "its latency");
        Assert.That(measurements.Any(m => m.Name == "billing.outbox.backlog" && (string?)m.Tags["service"] == "gateway-trace"), "the backlog gauge");

        BillingMetrics.RecordConsume("ai.generation", "quota", TimeSpan.FromMilliseconds(3));
        BillingMetrics.RecordWebhookIngested("invoice.paid", DateTimeOffset.UtcNow.AddSeconds(-2), DateTimeOffset.UtcNow);
        BillingMetrics.RecordFailedEvent("webhook", "invoice.paid");
        Assert.That(measurements.Select(m => m.Name), Is.SupersetOf(new[]
        {
            "billing.usage.consumes", "billing.usage.consume.duration", "billing.webhooks.ingest_lag", "billing.events.failed",
        }));
        Assert.That(measurements.Single(m => m.Name == "billing.webhooks.ingest_lag").Value, Is.InRange(1.5, 10));
    }

    private static Dictionary<string, object?> Tags(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var result = new Dictionary<string, object?>();
        foreach (var tag in tags)
        {
            result[tag.Key] = tag.Value;
        }
        return result;
    }
}
