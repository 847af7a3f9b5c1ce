using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Billing.Gateway.Tests;

/// <summary>What the fake backend saw of one forwarded request.</summary>
public sealed record Forwarded(string Method, string Path, IReadOnlyDictionary<string, string> Headers, string BodySha256, long BodyLength)
{
    public static Forwarded Of(string method, string path, IEnumerable<KeyValuePair<string, string>> headers, byte[] body) =>
        new(method, path, headers.ToDictionary(h => h.Key, h => h.Value, StringComparer.OrdinalIgnoreCase),
            Convert.ToHexStringLower(SHA256.HashData(body)), body.Length);
}

/// <summary>
/// A stand-in for all four services on a real loopback port: answers every request with what it received (method,
/// path, headers, a hash of the raw body), serves <c>/openapi/v1.json</c> and is always ready.
/// </summary>
public sealed class FakeBackend : IAsyncDisposable
{
    private readonly WebApplication _app;
    public ConcurrentQueue<Forwarded> Received { get; } = new();

    /// <summary>The size of each batch of consumes the gateway sent.</summary>
    public ConcurrentQueue<int> Batches { get; } = new();

    /// <summary>The status each batched consume is answered with.</summary>
    public int ConsumeStatus { get; set; } = 200;

    /// <summary>How the batch endpoint fails: null (it does not), "status" (500) or "garbage" (an answer out of range).</summary>
    public string? BatchFailure { get; set; }

    /// <summary>How long the batch endpoint takes (so that consumes queue up behind a batch in flight).</summary>
    public TimeSpan BatchDelay { get; set; }
    public Uri Url { get; }

    private FakeBackend(WebApplication app, Uri url)
    {
        _app = app;
        Url = url;
    }

    public static async Task<FakeBackend> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        FakeBackend? self = null;
        app.MapGet("/health/ready", () => Results.Json(new { status = "Healthy", checks = Array.Empty<object>() }));
        app.MapGet("/openapi/v1.json", () => Results.Json(new { openapi = "3.1.1", info = new { title = "fake", version = "v1" }, paths = new { } }));
        // Usage's batch endpoint, as the gateway's batched consume calls it: each item answered as if it had come alone,
        // one JSON line per answer, last item first (answers come back in the order they are done, not the batch's).
        app.MapPost(Billing.ServiceDefaults.ConsumeBatch.Path, async (HttpContext context) =>
        {
            var items = await System.Text.Json.JsonSerializer.DeserializeAsync<List<Billing.ServiceDefaults.BatchedRequest>>(
                context.Request.Body, Billing.ServiceDefaults.ConsumeBatch.Json);
            self!.Batches.Enqueue(items!.Count);
            await Task.Delay(self.BatchDelay);
            if (self.BatchFailure == "status")
            {
                context.Response.StatusCode = 500;
                return;
            }
            context.Response.ContentType = Billing.ServiceDefaults.ConsumeBatch.AnswerContentType;
            if (self.BatchFailure == "garbage")
            {
                await context.Response.WriteAsync("{\"index\":0,\"response\":{\"status\":70000}}\n");
                return;
            }
            for (var i = items.Count - 1; i >= 0; i--)
            {
                var item = items[i];
                var forwarded = Forwarded.Of("POST", Billing.ServiceDefaults.ConsumeBatch.ItemPath, item.Headers, item.Body);
                self.Received.Enqueue(forwarded);
                var answer = new Billing.ServiceDefaults.BatchedAnswer(i, new Billing.ServiceDefaults.BatchedResponse(self.ConsumeStatus,
                    new Dictionary<string, string> { ["Content-Type"] = "application/json; charset=utf-8" },
                    System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(forwarded, Billing.ServiceDefaults.ConsumeBatch.Json)));
                await context.Response.WriteAsync(System.Text.Json.JsonSerializer.Serialize(answer, Billing.ServiceDefaults.ConsumeBatch.Json) + "\n");
            }
        });
        app.Map("/{**path}", async (HttpContext context) =>
        {
            using var buffer = new MemoryStream();
            await context.Request.Body.CopyToAsync(buffer);
            var forwarded = Forwarded.Of(context.Request.Method, context.Request.Path + context.Request.QueryString,
                context.Request.Headers.Select(h => KeyValuePair.Create(h.Key, h.Value.ToString())), buffer.ToArray());
            self!.Received.Enqueue(forwarded);
            context.Response.Headers["X-Correlation-Id"] = context.Request.Headers["X-Correlation-Id"].ToString();
            return Results.Json(forwarded);
        });
        await app.StartAsync();
        var address = app.Urls.First();
        self = new FakeBackend(app, new Uri(address));
        return self;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>The real gateway (its appsettings.json routes) in-process, with every cluster pointing at <see cref="FakeBackend"/>.</summary>
public sealed class GatewayFactory(Uri backend, IReadOnlyDictionary<string, string?>? settings = null,
    Action<Microsoft.Extensions.DependencyInjection.IServiceCollection>? services = null) : WebApplicationFactory<Program>
{
    public static readonly string[] ServiceNames = ["subscriptions", "payments", "usage", "wallet"];

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Production");
        builder.UseSetting("BILLING_JWT_SIGNING_KEY", TestEnvironment.JwtSigningKey);
        builder.UseSetting("BILLING_CORS_ORIGINS", "https://app.example.com, https://quiz.example.com/");
        builder.UseSetting("Logging:LogLevel:Default", "Warning");
        foreach (var service in ServiceNames)
        {
            builder.UseSetting($"ReverseProxy:Clusters:{service}:Destinations:main:Address", backend.ToString());
        }
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            builder.UseSetting(key, value);
        }
        if (services is not null)
        {
            builder.ConfigureServices(services);
        }
    }
}
