using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Billing.Contracts;
using MassTransit;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using Stripe;

namespace Billing.Payments.Tests;

/// <summary>
/// The Payments service in-process (WebApplicationFactory) on the test run's PostgreSQL and RabbitMQ, with its own
/// database and queue prefix, Stripe's API played by <see cref="FakeStripe"/>, and the webhook processor tuned to retry
/// within a second. A second bus, with its own queue, records what Payments publishes.
/// </summary>
public sealed class PaymentsHost : WebApplicationFactory<Program>
{
    /// <summary>How long one Stripe call may take in these tests (production: 15 s Polly, 20 s HttpClient, both fixed in code).</summary>
    public static readonly TimeSpan StripeTimeout = TimeSpan.FromSeconds(1);

    public const int MaxAttempts = 4;

    private const string Purpose = "payments_faults";
    private readonly string _stripeBase;
    private readonly string _catalog;

    /// <param name="stripeBase">Where Stripe's API is (a fake).</param>
    /// <param name="catalog">The catalog file under deploy/catalogs (default.json unless a test needs packs, say).</param>
    public PaymentsHost(string stripeBase, string catalog = "default.json")
    {
        _stripeBase = stripeBase;
        _catalog = catalog;
        Admin = CreateClient();
        Admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.Admin());
    }

    public HttpClient Admin { get; }

    public static string ConnectionString => TestEnvironment.Database(Purpose) + ";Timeout=30;Command Timeout=60";

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("ConnectionStrings:Database", ConnectionString);
        builder.UseSetting("RabbitMq:Host", TestEnvironment.RabbitHost);
        builder.UseSetting("RabbitMq:Port", TestEnvironment.RabbitPort.ToString(CultureInfo.InvariantCulture));
        builder.UseSetting("RabbitMq:QueuePrefix", $"{TestEnvironment.RunId}-{Purpose}-");
        builder.UseSetting("BILLING_JWT_SIGNING_KEY", TestEnvironment.JwtSigningKey);
        builder.UseSetting("BILLING_CATALOG", Path.Combine(TestEnvironment.Repo, "deploy", "catalogs", _catalog));
        builder.UseSetting("STRIPE_SECRET_KEY", "sk_test_x");
        builder.UseSetting("STRIPE_API_BASE", _stripeBase);
        builder.UseSetting("STRIPE_WEBHOOK_SECRET", TestEnvironment.WebhookSecret);
        builder.UseSetting("STRIPE_RETRIES", "1");
        builder.UseSetting("Webhooks:MaxAttempts", MaxAttempts.ToString(CultureInfo.InvariantCulture));
        builder.UseSetting("Webhooks:MaxBackoff", "00:00:00.200");
        builder.ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Warning).AddFilter("Billing", LogLevel.Error));
        builder.ConfigureTestServices(services =>
        {
            // STRIPE_API_BASE and the key as AddBillingStripe sets them, but with a short HttpClient timeout: the service has no
            // setting for it (StripeCalls' Polly timeout is 15 s and the HttpClient's 20 s, both hard-coded).
            services.AddSingleton<IStripeClient>(_ => new StripeClient(new StripeClientOptions
            {
                ApiKey = "sk_test_x",
                ApiBase = _stripeBase,
                MeterEventsBase = _stripeBase,
                FilesBase = _stripeBase,
                ConnectBase = _stripeBase,
                HttpClient = new SystemNetHttpClient(new HttpClient { Timeout = StripeTimeout }, maxNetworkRetries: 0),
            }));
        });
    }

    /// <summary>POSTs a body signed with the webhook secret; returns the status, the answer and how long the ack took.</summary>
    public async Task<(HttpStatusCode Status, string Body, TimeSpan Took)> SendWebhookAsync(string body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/stripe") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.TryAddWithoutValidation("Stripe-Signature", StripeSignatures.Header(body));
        var watch = Stopwatch.StartNew();
        using var response = await Admin.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text, watch.Elapsed);
    }

    /// <summary>The stored event as <c>GET /api/admin/webhook-events</c> lists it, or null.</summary>
    public async Task<JsonElement?> StoredEventAsync(string eventId, string? status = null)
    {
        var response = await Admin.GetAsync("/api/admin/webhook-events?limit=500" + (status is null ? "" : "&status=" + status));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        foreach (var item in body.GetProperty("items").EnumerateArray())
        {
            if (item.GetProperty("id").GetString() == eventId)
            {
                return item.Clone();
            }
        }
        return null;
    }

    public static async Task<T> EventuallyAsync<T>(Func<Task<T>> read, Func<T, bool> done, string what, TimeSpan? timeout = null)
    {
        var deadline = Stopwatch.StartNew();
        var value = await read();
        while (!done(value))
        {
            if (deadline.Elapsed > (timeout ?? TimeSpan.FromSeconds(30)))
            {
                Assert.Fail($"timed out waiting for {what}; last value: {value}");
            }
            await Task.Delay(100);
            value = await read();
        }
        return value;
    }

    public static async Task<long> ScalarAsync(string sql, object args)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var p in args.GetType().GetProperties())
        {
            command.Parameters.AddWithValue(p.Name, p.GetValue(args)!);
        }
        return Convert.ToInt64(await command.ExecuteScalarAsync() ?? 0L, CultureInfo.InvariantCulture);
    }
}

/// <summary>A bus of its own (own queue, auto-deleted) that records the subscription events Payments publishes.</summary>
public sealed class PublishedEvents : IAsyncDisposable
{
    private readonly IBusControl _bus;
    private readonly ConcurrentQueue<(string Type, string SubscriptionId, Guid? MessageId)> _seen = new();

    private PublishedEvents(IBusControl bus) => _bus = bus;

    public static async Task<PublishedEvents> StartAsync()
    {
        PublishedEvents? self = null;
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(TestEnvironment.RabbitHost, TestEnvironment.RabbitPort, "/", h =>
            {
                h.Username("guest");
                h.Password("guest");
            });
            cfg.ReceiveEndpoint($"{TestEnvironment.RunId}-payments-tests-observer", e =>
            {
                e.AutoDelete = true;
                e.Durable = false;
                e.Handler<SubscriptionActivated>(c => self!.Record(nameof(SubscriptionActivated), c.Message.SubscriptionId, c.MessageId));
                e.Handler<SubscriptionUpdated>(c => self!.Record(nameof(SubscriptionUpdated), c.Message.SubscriptionId, c.MessageId));
                e.Handler<SubscriptionEnded>(c => self!.Record(nameof(SubscriptionEnded), c.Message.SubscriptionId, c.MessageId));
            });
        });
        self = new PublishedEvents(bus);
        using var started = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await bus.StartAsync(started.Token);
        return self;
    }

    private Task Record(string type, string subscriptionId, Guid? messageId)
    {
        _seen.Enqueue((type, subscriptionId, messageId));
        return Task.CompletedTask;
    }

    /// <summary>Every delivery about the subscription (a redelivered message counts again).</summary>
    public IReadOnlyList<string> About(string subscriptionId) => _seen.Where(s => s.SubscriptionId == subscriptionId).Select(s => s.Type).ToList();

    public async ValueTask DisposeAsync() => await _bus.StopAsync();
}
