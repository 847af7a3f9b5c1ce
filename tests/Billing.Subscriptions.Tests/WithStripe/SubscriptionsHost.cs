extern alias simulator;

using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Billing.ServiceDefaults.Stripe;
using Billing.Subscriptions.Api.Persistence;
using Billing.Subscriptions.Api.Stripe;
using Billing.Subscriptions.Core.Subscriptions;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using simulator::Billing.StripeSimulator;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>
/// The Subscriptions service in-process (WebApplicationFactory) on the test run's PostgreSQL and RabbitMQ, with Stripe
/// pointed at the in-process simulator. Payments is not part of these tests: a subscription's row is written the way
/// Payments' events would leave it, from the simulator's object.
/// </summary>
public sealed class SubscriptionsHost(string stripeBase) : WebApplicationFactory<Program>
{
    public const string Purpose = "subs_stripe";

    public static string CatalogPath => Path.Combine(AppContext.BaseDirectory, "Catalogs", "plans.json");

    public static string ConnectionString => TestEnvironment.Database(Purpose) + ";Timeout=30;Command Timeout=60";

    /// <summary>A Stripe.net client on the simulator, for what a test does or checks behind the service's back.</summary>
    public StripeClient Stripe { get; } = new(new StripeClientOptions
    {
        ApiKey = "sk_test_x",
        ApiBase = stripeBase,
        HttpClient = new SystemNetHttpClient(new HttpClient(), maxNetworkRetries: 0),
    });

    /// <summary>The service's clock (the system's unless a spec moves it; put it back in a finally).</summary>
    public TestClock Clock { get; } = new();

    private readonly HttpClient _simulator = new(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(stripeBase) };

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("ConnectionStrings:Database", ConnectionString);
        builder.UseSetting("RabbitMq:Host", TestEnvironment.RabbitHost);
        builder.UseSetting("RabbitMq:Port", TestEnvironment.RabbitPort.ToString(CultureInfo.InvariantCulture));
        builder.UseSetting("RabbitMq:QueuePrefix", $"{TestEnvironment.RunId}-{Purpose}-");
        builder.UseSetting("BILLING_JWT_SIGNING_KEY", TestEnvironment.JwtSigningKey);
        builder.UseSetting("BILLING_CATALOG", CatalogPath);
        builder.UseSetting("STRIPE_SECRET_KEY", "sk_test_x");
        builder.UseSetting("STRIPE_API_BASE", stripeBase);
        builder.UseSetting("STRIPE_RETRIES", "1");
        builder.UseSetting("BILLING_PUBLIC_URL", "http://app.test");
        builder.ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Warning));
        builder.ConfigureTestServices(services => services.AddSingleton<TimeProvider>(Clock));
    }

    /// <summary>Publishes <paramref name="message"/> on the bus and waits until the service's inbox has taken it.</summary>
    public async Task PublishAndWaitAsync<T>(T message) where T : class
    {
        var id = Guid.NewGuid();
        await Services.GetRequiredService<IBus>().Publish(message, c => c.MessageId = id);
        await Wait.UntilAsync(async () =>
        {
            await using var connection = new NpgsqlConnection(ConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT count(*) FROM inbox WHERE message_id = @id", connection);
            command.Parameters.AddWithValue("id", id);
            return (long)(await command.ExecuteScalarAsync())! > 0;
        }, TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(50));
    }

    public static string NewUser() => "u-" + Guid.NewGuid().ToString("N")[..12];

    public HttpClient UserClient(string userId)
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.User(userId));
        return client;
    }

    public async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(string userId, string path, object? body = null)
    {
        using var client = UserClient(userId);
        using var response = await client.PostAsJsonAsync(path, body ?? new { });
        return (response.StatusCode, await BodyAsync(response));
    }

    public async Task<(HttpStatusCode Status, JsonElement Body)> GetAsync(string userId, string path)
    {
        using var client = UserClient(userId);
        using var response = await client.GetAsync(path);
        return (response.StatusCode, await BodyAsync(response));
    }

    public static async Task<JsonElement> BodyAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>The user's Stripe customer, created and linked the way the service does it.</summary>
    public Task<string> CustomerAsync(string userId) =>
        Services.GetRequiredService<StripeCustomers>().GetOrCreateAsync(userId, $"{userId}@example.test", CancellationToken.None);

    /// <summary>
    /// Subscribes the user in the simulator (a paid checkout, no trial) and stores the row Payments' first event would
    /// have left; returns Stripe's subscription.
    /// </summary>
    public async Task<Subscription> SubscribeAsync(string userId, string planId, string interval, string card = "4242424242424242", string? priceId = null)
    {
        var customerId = await CustomerAsync(userId);
        var price = priceId is not null ? await new PriceService(Stripe).GetAsync(priceId)
            : (await new PriceService(Stripe).ListAsync(new PriceListOptions { LookupKeys = [$"{planId}_{interval}"], Active = true })).Data.Single();
        var session = await new global::Stripe.Checkout.SessionService(Stripe).CreateAsync(new global::Stripe.Checkout.SessionCreateOptions
        {
            Mode = "subscription",
            Customer = customerId,
            ClientReferenceId = userId,
            LineItems = [new() { Price = price.Id, Quantity = 1 }],
            SuccessUrl = "http://app.test/success",
            CancelUrl = "http://app.test/cancel",
            Metadata = new() { ["userId"] = userId, ["kind"] = "subscription", ["planId"] = planId },
            SubscriptionData = new() { Metadata = new() { ["userId"] = userId, ["planId"] = planId } },
        });
        using var paid = await PayAsync(session.Id, card);
        Assert.That((int)paid.StatusCode, Is.EqualTo(303), await paid.Content.ReadAsStringAsync());
        session = await new global::Stripe.Checkout.SessionService(Stripe).GetAsync(session.Id);
        var subscription = await new SubscriptionService(Stripe).GetAsync(session.SubscriptionId);
        await SaveLocalAsync(userId, planId, subscription, sequence: 1);
        return subscription;
    }

    /// <summary>
    /// A new user subscribed to <paramref name="planId"/> at a grandfathered price of <paramref name="amount"/> that a later
    /// catalog push archived (its subscribers keep it; Stripe refuses it in anything new).
    /// </summary>
    public async Task<(string User, Subscription Subscription, global::Stripe.Price Legacy)> SubscribeAtArchivedPriceAsync(string planId, string interval, long amount)
    {
        var prices = new PriceService(Stripe);
        var legacy = await prices.CreateAsync(new PriceCreateOptions
        {
            Product = $"billing_plan_{planId}", UnitAmount = amount, Currency = "usd",
            Recurring = new PriceRecurringOptions { Interval = interval }, Metadata = new() { ["planId"] = planId },
        });
        var user = NewUser();
        var subscription = await SubscribeAsync(user, planId, interval, priceId: legacy.Id);
        await prices.UpdateAsync(legacy.Id, new PriceUpdateOptions { Active = false });
        return (user, subscription, legacy);
    }

    /// <summary>Submits the hosted checkout page's Pay form, as a browser would.</summary>
    public Task<HttpResponseMessage> PayAsync(string sessionId, string card = "4242424242424242", string method = "card") =>
        _simulator.PostAsync($"/checkout/{sessionId}/pay", new FormUrlEncodedContent(new Dictionary<string, string> { ["card"] = card, ["method"] = method }));

    /// <summary>Changes the card the simulator charges the customer's next payments with.</summary>
    public async Task SetCardAsync(string customerId, string card)
    {
        using var response = await _simulator.PostAsJsonAsync($"/_sim/customers/{customerId}/card", new { card });
        Assert.That(response.IsSuccessStatusCode, Is.True, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Writes the subscription's row as Payments' events would have left it (with optional changes on top).</summary>
    public static async Task<SubscriptionRecord> SaveLocalAsync(string userId, string planId, Subscription s, long sequence,
        Func<SubscriptionRecord, SubscriptionRecord>? change = null)
    {
        var item = s.PlanItem();
        var record = new SubscriptionRecord
        {
            SubscriptionId = s.Id, UserId = userId, CustomerId = s.CustomerId, PlanId = planId, PriceId = item.Price.Id,
            Interval = item.Price.Recurring.Interval, IntervalCount = (int)item.Price.Recurring.IntervalCount, StripeStatus = s.Status,
            CurrentPeriodStart = item.CurrentPeriodStart, CurrentPeriodEnd = item.CurrentPeriodEnd, CancelAtPeriodEnd = s.CancelAtPeriodEnd,
            TrialEnd = s.TrialEnd, StartedAt = s.StartDate, Sequence = sequence,
        };
        record = change?.Invoke(record) ?? record;
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await SubscriptionStore.UpsertAsync(connection, tx, record, CancellationToken.None);
        await tx.CommitAsync();
        return record;
    }

    public static async Task<SubscriptionRecord?> LocalAsync(string subscriptionId)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var record = await SubscriptionStore.GetForUpdateAsync(connection, tx, subscriptionId, CancellationToken.None);
        await tx.CommitAsync();
        return record;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _simulator.Dispose();
        }
        base.Dispose(disposing);
    }
}

/// <summary>The simulator (with the test catalog pushed to it) and one Subscriptions host, started once for the run.</summary>
[SetUpFixture]
public sealed class Hosts
{
    private static WebApplication? _simulator;
    private static SubscriptionsHost? _subscriptions;

    public static string SimulatorUrl { get; private set; } = "";

    public static SubscriptionsHost Subscriptions => _subscriptions ??= new SubscriptionsHost(SimulatorUrl);

    [OneTimeSetUp]
    public async Task StartSimulatorAsync()
    {
        // Webhooks go nowhere: Payments is not part of these tests.
        _simulator = SimulatorApp.Build(["--urls", "http://127.0.0.1:0"], o =>
        {
            o.WebhookUrl = "";
            o.StateFile = null;
        });
        await _simulator.StartAsync();
        SimulatorUrl = _simulator.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
        _simulator.UsePublicUrl(SimulatorUrl);
        Assert.That(await PushCatalogAsync(SubscriptionsHost.CatalogPath), Is.Zero, "catalog push");
    }

    /// <summary>Runs <c>catalog push FILE</c> against the simulator; returns its exit code.</summary>
    public static Task<int> PushCatalogAsync(string path) =>
        CatalogCommands.RunAsync(["push", path], new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["STRIPE_SECRET_KEY"] = "sk_test_x",
            ["STRIPE_API_BASE"] = SimulatorUrl,
        }).Build());

    /// <summary>Moves the simulator's clock just past <paramref name="until"/> (renewals and retries fall due on the way).</summary>
    public static async Task AdvanceSimulatorAsync(DateTime until)
    {
        using var http = new HttpClient { BaseAddress = new Uri(SimulatorUrl) };
        var clock = JsonDocument.Parse(await http.GetStringAsync("/_sim/clock")).RootElement;
        var seconds = new DateTimeOffset(until, TimeSpan.Zero).ToUnixTimeSeconds() + 60 - clock.GetProperty("now").GetInt64();
        using var response = await http.PostAsJsonAsync("/_sim/clock/advance", new { seconds = Math.Max(seconds, 0) });
        Assert.That(response.IsSuccessStatusCode, Is.True, await response.Content.ReadAsStringAsync());
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        if (_subscriptions is not null)
        {
            await _subscriptions.DisposeAsync();
        }
        if (_simulator is not null)
        {
            await _simulator.StopAsync();
            await _simulator.DisposeAsync();
        }
    }
}
