extern alias simulator;

using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Billing.Contracts;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using simulator::Billing.StripeSimulator;

namespace Billing.Wallet.Tests;

/// <summary>
/// The Wallet service in-process (WebApplicationFactory) on the test run's PostgreSQL and RabbitMQ, with its own database
/// and queue prefix per catalog, Stripe pointed at the in-process simulator, and helpers that speak its API.
/// </summary>
public sealed class WalletHost : WebApplicationFactory<Program>
{
    private readonly string _catalog;
    private readonly string _purpose;
    private readonly string _stripeBase;

    public WalletHost(string catalogPath, string purpose, string stripeBase)
    {
        _catalog = catalogPath;
        _purpose = purpose;
        _stripeBase = stripeBase;
        Service = CreateClient();
        Service.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.Service());
        Admin = CreateClient();
        Admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.Admin());
    }

    public TestClock Clock { get; } = new();

    /// <summary>A client with the <c>billing.usage</c> scope (what Usage calls with).</summary>
    public HttpClient Service { get; }

    /// <summary>A client with the <c>billing.admin</c> scope.</summary>
    public HttpClient Admin { get; }

    public string ConnectionString => TestEnvironment.Database(_purpose) + ";Timeout=30;Command Timeout=60;Maximum Pool Size=40";

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("ConnectionStrings:Database", ConnectionString);
        builder.UseSetting("RabbitMq:Host", TestEnvironment.RabbitHost);
        builder.UseSetting("RabbitMq:Port", TestEnvironment.RabbitPort.ToString(CultureInfo.InvariantCulture));
        builder.UseSetting("RabbitMq:QueuePrefix", $"{TestEnvironment.RunId}-{_purpose}-");
        builder.UseSetting("BILLING_JWT_SIGNING_KEY", TestEnvironment.JwtSigningKey);
        builder.UseSetting("BILLING_CATALOG", _catalog);
        builder.UseSetting("STRIPE_SECRET_KEY", "sk_test_x");
        builder.UseSetting("STRIPE_API_BASE", _stripeBase);
        builder.UseSetting("STRIPE_RETRIES", "1");
        builder.UseSetting("BILLING_PUBLIC_URL", "http://app.test");
        builder.ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Warning));
        builder.ConfigureTestServices(services => services.AddSingleton<TimeProvider>(Clock));
    }

    public static string NewUser() => "u-" + Guid.NewGuid().ToString("N")[..12];

    public static string NewKey() => "k-" + Guid.NewGuid().ToString("N");

    public HttpClient UserClient(string userId, string? email = null)
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.User(userId, email));
        return client;
    }

    public async Task<long> BalanceAsync(string userId)
    {
        var response = await Service.GetAsync($"/internal/wallet/{userId}");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        return (await BodyAsync(response)).GetProperty("balance").GetInt64();
    }

    public async Task<(HttpStatusCode Status, JsonElement Body)> DebitAsync(string userId, long amount, string key, string? reference = null)
    {
        var response = await Service.PostAsJsonAsync("/internal/wallet/debit", new { userId, amount, idempotencyKey = key, reference });
        return (response.StatusCode, await BodyAsync(response));
    }

    public async Task<JsonElement> GrantAsync(string userId, long amount, string? key = null, DateTimeOffset? expiresAt = null, string reason = "promotion")
    {
        var response = await Admin.PostAsJsonAsync($"/api/admin/wallet/{userId}/grants", new { amount, idempotencyKey = key ?? NewKey(), reason, expiresAt });
        var body = await BodyAsync(response);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        return body;
    }

    public async Task<List<JsonElement>> TransactionsAsync(string userId, int limit = 200)
    {
        using var client = UserClient(userId);
        var response = await client.GetAsync($"/api/wallet/me/transactions?limit={limit}");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        return (await BodyAsync(response)).GetProperty("items").EnumerateArray().ToList();
    }

    /// <summary>Publishes on the real bus, as Payments' outbox relay would (optionally with a chosen MessageId).</summary>
    public Task PublishAsync<T>(T message, Guid? messageId = null) where T : class =>
        Services.GetRequiredService<IBus>().Publish(message, context => context.MessageId = messageId ?? Guid.NewGuid());

    public static TokenPackPurchased Purchased(string userId, string packId = "starter", long tokens = 100_000, long amount = 500, string? session = null) => new()
    {
        UserId = userId,
        PackId = packId,
        Tokens = tokens,
        CheckoutSessionId = session ?? "cs_test_" + Guid.NewGuid().ToString("N"),
        PaymentIntentId = "pi_" + Guid.NewGuid().ToString("N")[..16],
        Amount = amount,
        Currency = "usd",
        OccurredAt = DateTimeOffset.UtcNow,
        StripeEventId = "evt_" + Guid.NewGuid().ToString("N")[..16],
    };

    public static PaymentRefunded Refunded(TokenPackPurchased purchase, long amountRefunded) => new()
    {
        UserId = purchase.UserId,
        PaymentId = purchase.PaymentIntentId!,
        Kind = "token_pack",
        ChargeId = "ch_" + purchase.PaymentIntentId![3..],
        PaymentIntentId = purchase.PaymentIntentId,
        Amount = purchase.Amount,
        AmountRefunded = amountRefunded,
        Currency = "usd",
        FullyRefunded = amountRefunded >= purchase.Amount,
        PackId = purchase.PackId,
        PackTokens = purchase.Tokens,
        OccurredAt = DateTimeOffset.UtcNow,
        StripeEventId = "evt_" + Guid.NewGuid().ToString("N")[..16],
    };

    /// <summary>Publishes the purchase of a Starter pack (100,000 tokens) and waits for its tokens.</summary>
    public async Task<TokenPackPurchased> BuyAsync(string user)
    {
        var purchase = Purchased(user);
        await PublishAsync(purchase);
        await EventuallyAsync(async () => await BalanceAsync(user) >= 100_000);
        return purchase;
    }

    /// <summary>A chargeback of the whole pack (Payments' <c>charge.dispute.created</c>).</summary>
    public static PaymentDisputed Disputed(TokenPackPurchased purchase) => new()
    {
        UserId = purchase.UserId, PaymentId = purchase.PaymentIntentId!, Kind = "token_pack", DisputeId = "dp_" + purchase.PaymentIntentId![3..],
        ChargeId = "ch_" + purchase.PaymentIntentId![3..], PaymentIntentId = purchase.PaymentIntentId, Amount = purchase.Amount,
        AmountDisputed = purchase.Amount, Currency = "usd", Reason = "fraudulent", PackId = purchase.PackId, PackTokens = purchase.Tokens,
        OccurredAt = DateTimeOffset.UtcNow, StripeEventId = "evt_" + Guid.NewGuid().ToString("N")[..16],
    };

    /// <summary>The chargeback is over (Payments' <c>charge.dispute.closed</c>): <c>won</c>, <c>lost</c> or <c>warning_closed</c>.</summary>
    public static PaymentDisputeClosed DisputeClosed(TokenPackPurchased purchase, string status) => new()
    {
        UserId = purchase.UserId, PaymentId = purchase.PaymentIntentId!, Kind = "token_pack", DisputeId = "dp_" + purchase.PaymentIntentId![3..],
        ChargeId = "ch_" + purchase.PaymentIntentId![3..], PaymentIntentId = purchase.PaymentIntentId, Status = status, Amount = purchase.Amount,
        Currency = "usd", PackId = purchase.PackId, PackTokens = purchase.Tokens, OccurredAt = DateTimeOffset.UtcNow,
        StripeEventId = "evt_" + Guid.NewGuid().ToString("N")[..16],
    };

    public async Task<long> ScalarAsync(string sql, object? args = null)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var p in args?.GetType().GetProperties() ?? [])
        {
            command.Parameters.AddWithValue(p.Name, p.GetValue(args)!);
        }
        return Convert.ToInt64(await command.ExecuteScalarAsync() ?? 0L, CultureInfo.InvariantCulture);
    }

    public static async Task<JsonElement> BodyAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    public static Task EventuallyAsync(Func<Task<bool>> condition, TimeSpan? timeout = null) =>
        Wait.UntilAsync(condition, timeout, TimeSpan.FromMilliseconds(50));

    public static StringContent Json(string raw) => Wait.Json(raw);
}

/// <summary>The simulator and one Wallet host per catalog, started once for the whole run.</summary>
[SetUpFixture]
public sealed class Hosts
{
    private static WebApplication? _simulator;
    private static WalletHost? _packs;
    private static WalletHost? _trial;

    public static string SimulatorUrl { get; private set; } = "";

    /// <summary>Catalogs/packs.json: four packs (one expiring), no sign-up grant.</summary>
    public static WalletHost Packs => _packs ??= new WalletHost(Catalog("packs.json"), "wallet", SimulatorUrl);

    /// <summary>Catalogs/trial.json: a 5,000-token sign-up grant.</summary>
    public static WalletHost Trial => _trial ??= new WalletHost(Catalog("trial.json"), "wallet_trial", SimulatorUrl);

    private static string Catalog(string name) => Path.Combine(AppContext.BaseDirectory, "Catalogs", name);

    [OneTimeSetUp]
    public async Task StartSimulatorAsync()
    {
        // Webhooks go nowhere: Payments is not part of these tests; its event is published by hand.
        _simulator = SimulatorApp.Build(["--urls", "http://127.0.0.1:0"], o => o.WebhookUrl = "");
        await _simulator.StartAsync();
        SimulatorUrl = _simulator.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
        _simulator.UsePublicUrl(SimulatorUrl);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        if (_packs is not null)
        {
            await _packs.DisposeAsync();
        }
        if (_trial is not null)
        {
            await _trial.DisposeAsync();
        }
        if (_simulator is not null)
        {
            await _simulator.StopAsync();
            await _simulator.DisposeAsync();
        }
    }
}
