using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Billing.Contracts;
using Billing.Usage.Api.Subscribers;
using Billing.Usage.Core.Subscribers;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using WireMock.Server;

namespace Billing.Usage.Tests;

/// <summary>
/// The Usage service in-process (WebApplicationFactory) on the test run's PostgreSQL and RabbitMQ, with its own
/// database and queue prefix per catalog, and helpers that speak its API.
/// </summary>
public sealed class UsageHost : WebApplicationFactory<Program>
{
    private readonly string _catalog;
    private readonly string _purpose;

    public UsageHost(string catalogPath, string purpose)
    {
        _catalog = catalogPath;
        _purpose = purpose;
        Stubs = WireMockServer.Start();
        Service = CreateClient();
        Service.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.Service());
    }

    public TestClock Clock { get; } = new();

    /// <summary>Wallet's internal API and Stripe's meter events, stubbed (WireMock) for this host.</summary>
    public WireMockServer Stubs { get; }

    public HttpClient Service { get; }

    public string ConnectionString =>
        TestEnvironment.Database(_purpose) + ";Timeout=30;Maximum Pool Size=40";

    public static string RepoCatalog => Path.Combine(TestEnvironment.Repo, "deploy", "catalogs", "default.json");

    public static string TestCatalog => Path.Combine(AppContext.BaseDirectory, "Catalogs", "test-catalog.json");

    public static string OverageCatalog => Path.Combine(AppContext.BaseDirectory, "Catalogs", "overage-catalog.json");

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing)
        {
            Stubs.Stop();
        }
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("ConnectionStrings:Database", ConnectionString);
        builder.UseSetting("RabbitMq:Host", TestEnvironment.RabbitHost);
        builder.UseSetting("RabbitMq:Port", TestEnvironment.RabbitPort.ToString(CultureInfo.InvariantCulture));
        builder.UseSetting("RabbitMq:QueuePrefix", $"{TestEnvironment.RunId}-{_purpose}-");
        builder.UseSetting("BILLING_JWT_SIGNING_KEY", TestEnvironment.JwtSigningKey);
        builder.UseSetting("BILLING_CATALOG", _catalog);
        builder.UseSetting("Services:wallet", Stubs.Url);
        builder.UseSetting("STRIPE_SECRET_KEY", "sk_test_usage_component");
        builder.UseSetting("STRIPE_API_BASE", Stubs.Url);
        builder.UseSetting("STRIPE_RETRIES", "1");
        builder.UseSetting("Usage:SweepIntervalMs", "100");
        builder.UseSetting("Usage:OverageIntervalMs", "100");
        // The scheduled overage check runs at the start and then only when a spec asks (no second look while one runs).
        builder.UseSetting("Usage:OverageCheckPollSeconds", "86400");
        builder.ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Warning));
        builder.ConfigureTestServices(services => services.AddSingleton<TimeProvider>(Clock));
    }

    public static string NewUser() => "u-" + Guid.NewGuid().ToString("N")[..12];

    public static string NewKey() => "k-" + Guid.NewGuid().ToString("N");

    /// <summary><c>GET /api/admin/usage/verify</c> with an admin token.</summary>
    public async Task<JsonElement> VerifyAsync()
    {
        using var admin = CreateClient();
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.Admin());
        return await BodyAsync(await admin.GetAsync("/api/admin/usage/verify"));
    }

    public HttpClient UserClient(string userId, IEnumerable<string>? groups = null)
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.User(userId, groups: groups));
        return client;
    }

    public async Task<(HttpStatusCode Status, JsonElement Body)> ConsumeAsync(string userId, string key, long quantity = 1,
        string meter = "ai.generation", IEnumerable<string>? groups = null)
    {
        var response = await Service.PostAsJsonAsync("/api/usage/consume", new { userId, meter, quantity, idempotencyKey = key, groups });
        return (response.StatusCode, await BodyAsync(response));
    }

    public async Task<JsonElement> MeterAsync(string userId, string meter = "ai.generation")
    {
        using var client = UserClient(userId);
        var response = await client.GetAsync("/api/usage/me");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var body = await BodyAsync(response);
        return body.GetProperty("meters").EnumerateArray().Single(m => m.GetProperty("meter").GetString() == meter);
    }

    public static async Task<JsonElement> BodyAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    private SubscriberEventsHandler Handler => Services.GetRequiredService<SubscriberEventsHandler>();

    /// <summary>Applies a subscription event as its consumer would (the bus itself is exercised by its own test).</summary>
    public Task<bool> ApplyAsync(SubscriptionActivated e) => Handler.HandleAsync(Guid.NewGuid(), "SubscriptionActivatedConsumer", SubscriptionChange.From(e), default);

    public Task<bool> ApplyAsync(SubscriptionUpdated e) => Handler.HandleAsync(Guid.NewGuid(), "SubscriptionUpdatedConsumer", SubscriptionChange.From(e), default);

    public Task<bool> ApplyAsync(SubscriptionEnded e) => Handler.HandleAsync(Guid.NewGuid(), "SubscriptionEndedConsumer", SubscriptionChange.From(e), default);

    public Task<bool> ApplyAsync(SubscriptionAccessSuspended e) => Handler.HandleAsync(Guid.NewGuid(), "SubscriptionAccessSuspendedConsumer", e, default);

    public Task<bool> ApplyAsync(InvoicePaid e) => Handler.HandleAsync(Guid.NewGuid(), "InvoicePaidConsumer", e, default);

    public static SubscriptionActivated Activated(string userId, string planId = "pro", long sequence = 1, DateTimeOffset? startedAt = null,
        string? subscriptionId = null)
    {
        var start = startedAt ?? DateTimeOffset.UtcNow.AddDays(-3);
        return new SubscriptionActivated
        {
            UserId = userId,
            SubscriptionId = subscriptionId ?? "sub_" + userId,
            CustomerId = "cus_" + userId,
            PlanId = planId,
            PriceId = "price_" + planId,
            Interval = "month",
            IntervalCount = 1,
            Status = "active",
            CurrentPeriodStart = start,
            CurrentPeriodEnd = start.AddMonths(1),
            StartedAt = start,
            Sequence = sequence,
            OccurredAt = start,
        };
    }

    public static SubscriptionUpdated Updated(SubscriptionActivated from, string status, long sequence, string? planId = null, DateTimeOffset? occurredAt = null) => new()
    {
        UserId = from.UserId,
        SubscriptionId = from.SubscriptionId,
        CustomerId = from.CustomerId,
        PlanId = planId ?? from.PlanId,
        PriceId = from.PriceId,
        Interval = from.Interval,
        IntervalCount = from.IntervalCount,
        Status = status,
        CurrentPeriodStart = from.CurrentPeriodStart,
        CurrentPeriodEnd = from.CurrentPeriodEnd,
        CancelAtPeriodEnd = false,
        StartedAt = from.StartedAt,
        Sequence = sequence,
        OccurredAt = occurredAt ?? DateTimeOffset.UtcNow,
    };

    /// <summary>Subscriptions' suspension of the past-due episode that began at <paramref name="pastDueSince"/>, decided at <paramref name="at"/>.</summary>
    public static SubscriptionAccessSuspended Suspended(SubscriptionActivated from, DateTimeOffset pastDueSince, DateTimeOffset at) => new()
    {
        UserId = from.UserId,
        SubscriptionId = from.SubscriptionId,
        PlanId = from.PlanId,
        PastDueSince = pastDueSince,
        GraceUntil = at,
        OccurredAt = at,
    };

    /// <summary>The subscription's invoice for the period from <paramref name="periodStart"/> to <paramref name="periodEnd"/>, paid at <paramref name="paidAt"/>.</summary>
    public static InvoicePaid Paid(SubscriptionActivated from, DateTimeOffset periodStart, DateTimeOffset periodEnd, DateTimeOffset paidAt) => new()
    {
        UserId = from.UserId,
        InvoiceId = "in_" + from.UserId + "_" + periodStart.ToUnixTimeSeconds(),
        CustomerId = from.CustomerId,
        SubscriptionId = from.SubscriptionId,
        PlanId = from.PlanId,
        BillingReason = "subscription_cycle",
        AmountPaid = 500,
        Currency = "usd",
        PeriodStart = periodStart,
        PeriodEnd = periodEnd,
        OccurredAt = paidAt,
    };

    public static SubscriptionEnded Ended(SubscriptionActivated from, long sequence) => new()
    {
        UserId = from.UserId,
        SubscriptionId = from.SubscriptionId,
        PlanId = from.PlanId,
        Status = "canceled",
        EndedAt = DateTimeOffset.UtcNow,
        Sequence = sequence,
        OccurredAt = DateTimeOffset.UtcNow,
    };

    public async Task<long> ScalarAsync(string sql, object? args = null) =>
        Convert.ToInt64(await RawScalarAsync(sql, args) ?? 0L, CultureInfo.InvariantCulture);

    public async Task<string?> ScalarTextAsync(string sql, object? args = null) => (await RawScalarAsync(sql, args))?.ToString();

    private async Task<object?> RawScalarAsync(string sql, object? args)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var p in args?.GetType().GetProperties() ?? [])
        {
            command.Parameters.AddWithValue(p.Name, p.GetValue(args)!);
        }
        return await command.ExecuteScalarAsync();
    }

    public static Task EventuallyAsync(Func<Task<bool>> condition, TimeSpan? timeout = null) =>
        Wait.UntilAsync(condition, timeout, TimeSpan.FromMilliseconds(100));

    public static StringContent Json(string raw) => Wait.Json(raw);
}

/// <summary>One host per catalog for the whole run: starting the service and its bus is the expensive part.</summary>
[SetUpFixture]
public sealed class Hosts
{
    private static UsageHost? _default;
    private static UsageHost? _test;
    private static UsageHost? _overage;

    /// <summary>The repo's deploy/catalogs/default.json (Pro: 250 generations a month).</summary>
    public static UsageHost Default => _default ??= new UsageHost(UsageHost.RepoCatalog, "usage");

    /// <summary>Catalogs/test-catalog.json: day and period windows, unlimited allowances, a larger plan.</summary>
    public static UsageHost Test => _test ??= new UsageHost(UsageHost.TestCatalog, "usage_windows");

    /// <summary>Catalogs/overage-catalog.json: token and billed overage, and a 1,000-unit allowance.</summary>
    public static UsageHost Overage => _overage ??= new UsageHost(UsageHost.OverageCatalog, "usage_overage");

    [OneTimeTearDown]
    public async Task StopHosts()
    {
        if (_default is not null)
        {
            await _default.DisposeAsync();
        }
        if (_test is not null)
        {
            await _test.DisposeAsync();
        }
        if (_overage is not null)
        {
            await _overage.DisposeAsync();
        }
    }
}
