using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Stripe;

namespace Billing.StripeSimulator.Tests;

public sealed record ReceivedWebhook(string Body, string Signature, DateTimeOffset At)
{
    public JsonObject Json => JsonNode.Parse(Body)!.AsObject();
    public string Type => Json["type"]!.GetValue<string>();
}

/// <summary>
/// Starts, once for the whole run, a webhook receiver and the simulator on loopback ports chosen by the OS, and
/// gives tests a Stripe.net client pointed at the simulator.
/// </summary>
[SetUpFixture]
public sealed class SimulatorHost
{
    public const string Secret = "whsec_test_simulator_secret";

    private static WebApplication? _simulator;
    private static WebApplication? _receiver;

    public static string SimulatorUrl { get; private set; } = "";
    public static string ReceiverUrl { get; private set; } = "";
    public static StripeClient Stripe { get; private set; } = null!;
    public static HttpClient Http { get; private set; } = null!;
    public static ConcurrentQueue<ReceivedWebhook> Webhooks { get; } = new();

    /// <summary>How many upcoming deliveries the receiver answers with 500.</summary>
    public static int FailNextDeliveries;

    private static readonly Lock ReceiveGate = new();

    /// <summary>Forgets what the receiver got; together with a reset before it, no earlier test's delivery is kept.</summary>
    public static void ClearWebhooks()
    {
        lock (ReceiveGate)
        {
            FailNextDeliveries = 0;
            Webhooks.Clear();
        }
    }

    private static bool IsCurrentEvent(string eventId)
    {
        var sim = _simulator!.Services.GetRequiredService<Engine.Sim>();
        lock (sim.State.Gate)
        {
            return sim.State.EventsById.ContainsKey(eventId);
        }
    }

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        var receiverBuilder = WebApplication.CreateSlimBuilder();
        receiverBuilder.WebHost.UseUrls("http://127.0.0.1:0");
        _receiver = receiverBuilder.Build();
        _receiver.MapPost("/webhooks/stripe", async (HttpRequest request) =>
        {
            using var reader = new StreamReader(request.Body, Encoding.UTF8);
            var body = await reader.ReadToEndAsync();
            var webhook = new ReceivedWebhook(body, request.Headers["Stripe-Signature"].ToString(), DateTimeOffset.UtcNow);
            lock (ReceiveGate)
            {
                // A delivery of an earlier test can still be on the wire when the next test resets the simulator;
                // it must neither show up among this test's webhooks nor use up one of its planned failures.
                if (!IsCurrentEvent(webhook.Json["id"]!.GetValue<string>()))
                {
                    return Results.Ok();
                }
                if (Interlocked.Decrement(ref FailNextDeliveries) >= 0)
                {
                    return Results.StatusCode(500);
                }
                Interlocked.Exchange(ref FailNextDeliveries, 0);
                Webhooks.Enqueue(webhook);
            }
            return Results.Ok();
        });
        await _receiver.StartAsync();
        ReceiverUrl = Address(_receiver);

        _simulator = SimulatorApp.Build(["--urls", "http://127.0.0.1:0"], o =>
        {
            o.WebhookUrl = ReceiverUrl + "/webhooks/stripe";
            o.WebhookSecret = Secret;
            o.StateFile = null; // in memory only, whatever SIM_STATE_FILE says
        });
        await _simulator.StartAsync();
        SimulatorUrl = Address(_simulator);
        _simulator.UsePublicUrl(SimulatorUrl);

        Http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(SimulatorUrl) };
        Stripe = new StripeClient(new StripeClientOptions
        {
            ApiKey = "sk_test_simulator",
            ApiBase = SimulatorUrl,
            HttpClient = new SystemNetHttpClient(new HttpClient(), maxNetworkRetries: 0),
        });
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        Http?.Dispose();
        if (_simulator is not null)
        {
            await _simulator.StopAsync();
            await _simulator.DisposeAsync();
        }
        if (_receiver is not null)
        {
            await _receiver.StopAsync();
            await _receiver.DisposeAsync();
        }
    }

    private static string Address(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
}

/// <summary>A clean simulator for every test, plus the helpers the scenarios share.</summary>
public abstract class SimulatorSpec
{
    protected static StripeClient Stripe => SimulatorHost.Stripe;
    protected static HttpClient Http => SimulatorHost.Http;

    [SetUp]
    public async Task ResetSimulatorAsync()
    {
        await PostJson("/_sim/reset", new JsonObject());
        await PostJson("/_sim/config", new JsonObject { ["deliverWebhooks"] = true, ["webhookUrl"] = SimulatorHost.ReceiverUrl + "/webhooks/stripe" });
        SimulatorHost.ClearWebhooks();
    }

    protected static async Task<JsonObject> PostJson(string path, JsonObject body)
    {
        using var response = await Http.PostAsync(path, new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.That(response.IsSuccessStatusCode, Is.True, $"{path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!.AsObject();
    }

    protected static async Task<JsonObject> GetJson(string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Authorization = new("Bearer", "sk_test_simulator");
        using var response = await Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.That(response.IsSuccessStatusCode, Is.True, $"{path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!.AsObject();
    }

    /// <summary>A raw form POST to the Stripe API, to see exactly what the simulator answers.</summary>
    protected static async Task<(HttpStatusCode Status, JsonObject Body)> PostForm(string path, string form, string? idempotencyKey = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path)
        {
            Content = new StringContent(form, Encoding.UTF8, "application/x-www-form-urlencoded"),
        };
        request.Headers.Authorization = new("Bearer", "sk_test_simulator");
        if (idempotencyKey is not null)
        {
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        }
        using var response = await Http.SendAsync(request);
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
    }

    protected static async Task<long> Now() => (await GetJson("/_sim/clock"))["now"]!.GetValue<long>();

    protected static Task<JsonObject> Advance(long seconds) => PostJson("/_sim/clock/advance", new JsonObject { ["seconds"] = seconds });

    protected static async Task AdvanceTo(long unix)
    {
        var now = await Now();
        if (unix > now)
        {
            await Advance(unix - now);
        }
    }

    protected static Task<Price> CreatePrice(string lookupKey, long amount, string? interval = "month", long intervalCount = 1, string productName = "Pro") =>
        new PriceService(Stripe).CreateAsync(new PriceCreateOptions
        {
            Currency = "usd",
            UnitAmount = amount,
            ProductData = new PriceProductDataOptions { Name = productName },
            Recurring = interval is null ? null! : new PriceRecurringOptions { Interval = interval, IntervalCount = intervalCount },
            LookupKey = lookupKey,
            TransferLookupKey = true,
        });

    protected static Task<Stripe.Checkout.Session> CreateSubscriptionCheckout(Price price, string? customerId = null, long? trialDays = null, string userId = "u42") =>
        new Stripe.Checkout.SessionService(Stripe).CreateAsync(new Stripe.Checkout.SessionCreateOptions
        {
            Mode = "subscription",
            Customer = customerId,
            ClientReferenceId = userId,
            LineItems = [new() { Price = price.Id, Quantity = 1 }],
            SuccessUrl = "https://app.example/success?session_id={CHECKOUT_SESSION_ID}",
            CancelUrl = "https://app.example/cancel",
            Metadata = new() { ["userId"] = userId, ["kind"] = "subscription", ["planId"] = "pro" },
            SubscriptionData = new Stripe.Checkout.SessionSubscriptionDataOptions
            {
                Metadata = new() { ["userId"] = userId, ["planId"] = "pro" },
                TrialPeriodDays = trialDays,
            },
        });

    protected static async Task<Customer> CreateCustomer(string userId = "u42") =>
        await new CustomerService(Stripe).CreateAsync(new CustomerCreateOptions { Email = $"{userId}@example.test", Metadata = new() { ["userId"] = userId } });

    /// <summary>Submits the hosted checkout page's Pay form, as a browser would.</summary>
    protected static async Task<HttpResponseMessage> Pay(string sessionId, string card = "4242424242424242", string method = "card")
    {
        var form = new FormUrlEncodedContent(new Dictionary<string, string> { ["card"] = card, ["method"] = method });
        return await Http.PostAsync($"/checkout/{sessionId}/pay", form);
    }

    protected static async Task<Subscription> SubscribeAndPay(Price price, string card = "4242424242424242", long? trialDays = null)
    {
        var customer = await CreateCustomer();
        var session = await CreateSubscriptionCheckout(price, customer.Id, trialDays);
        using var response = await Pay(session.Id, card);
        Assert.That((int)response.StatusCode, Is.EqualTo(303), await response.Content.ReadAsStringAsync());
        session = await new Stripe.Checkout.SessionService(Stripe).GetAsync(session.Id);
        return await new SubscriptionService(Stripe).GetAsync(session.SubscriptionId);
    }

    protected static async Task<List<string>> EventTypes(long? createdAfter = null)
    {
        var list = await GetJson("/_sim/events");
        return list["data"]!.AsArray()
            .Select(e => e!["event"]!.AsObject())
            .Where(e => createdAfter is null || e["created"]!.GetValue<long>() >= createdAfter)
            .Select(e => e["type"]!.GetValue<string>())
            .Reverse()
            .ToList();
    }

    /// <summary>Waits until the receiver got webhooks matching the predicate.</summary>
    protected static async Task<List<ReceivedWebhook>> WaitForWebhooks(Func<List<ReceivedWebhook>, bool> done, int timeoutMs = 10_000)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (true)
        {
            var received = SimulatorHost.Webhooks.ToList();
            if (done(received))
            {
                return received;
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail("Webhooks did not arrive; got: " + string.Join(", ", received.Select(w => w.Type)));
            }
            await Task.Delay(50);
        }
    }
}
