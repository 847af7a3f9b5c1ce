using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Billing.ServiceDefaults;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Billing.Gateway.Tests;

/// <summary>
/// <c>POST /api/usage/consume</c> through the gateway goes to Usage in batches (<see cref="ConsumeBatch"/>): each caller
/// still gets its own consume's answer, and only the headers a consume needs travel with it.
/// </summary>
[TestFixture]
public class Consumes_through_the_gateway
{
    private FakeBackend _backend = null!;
    private GatewayFactory _gateway = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        _backend = await FakeBackend.StartAsync();
        _gateway = new GatewayFactory(_backend.Url);
        _gateway.CreateClient().Dispose();
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _gateway.DisposeAsync();
        await _backend.DisposeAsync();
    }

    [TearDown]
    public void Reset()
    {
        _backend.BatchDelay = TimeSpan.Zero;
        _backend.ConsumeStatus = 200;
        _backend.BatchFailure = null;
    }

    private static async Task<HttpResponseMessage> ConsumeAsync(GatewayFactory gateway, string body, Action<HttpRequestMessage>? configure = null)
    {
        var client = gateway.CreateClient();
        var request = new HttpRequestMessage(HttpMethod.Post, ConsumeBatch.ItemPath) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.Service());
        configure?.Invoke(request);
        return await client.SendAsync(request);
    }

    private static string Body(int i) => $"{{\"userId\":\"u{i}\",\"meter\":\"ai.generation\",\"quantity\":1,\"idempotencyKey\":\"k-{i}\"}}";

    [Test]
    public async Task Sends_concurrent_consumes_as_batches_and_answers_each_caller_with_its_own_consumes_answer()
    {
        _backend.BatchDelay = TimeSpan.FromMilliseconds(100); // consumes queue up behind the batches in flight
        var before = _backend.Batches.Count;

        var answers = await Task.WhenAll(Enumerable.Range(0, 100).Select(async i =>
        {
            using var response = await ConsumeAsync(_gateway, Body(i));
            return (i, response.StatusCode, Seen: await response.Content.ReadFromJsonAsync<Forwarded>());
        }));

        foreach (var (i, status, seen) in answers)
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That((seen!.Method, seen.Path), Is.EqualTo(("POST", ConsumeBatch.ItemPath)));
            Assert.That(seen.BodySha256, Is.EqualTo(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Body(i))))), $"consume {i} got its own answer");
        }
        var batches = _backend.Batches.Skip(before).ToList();
        Assert.That(batches.Sum(), Is.EqualTo(100));
        Assert.That(batches.Max(), Is.GreaterThan(1), "consumes that arrived together went in one request");
        Assert.That(batches.Max(), Is.LessThanOrEqualTo(64), "Gateway:ConsumeBatching:MaxBatch");
    }

    [Test]
    public async Task Carries_only_the_token_the_correlation_id_and_the_trace_of_a_consume()
    {
        using var response = await ConsumeAsync(_gateway, Body(1), r =>
        {
            r.Headers.TryAddWithoutValidation("X-User-Id", "u-victim");
            r.Headers.TryAddWithoutValidation("X-Forwarded-User", "u-victim");
            r.Headers.TryAddWithoutValidation("X-Something-Else", "x");
            r.Headers.TryAddWithoutValidation(CorrelationId.Header, "corr-consume-1");
            r.Headers.TryAddWithoutValidation("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        });

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(response.Headers.GetValues(CorrelationId.Header), Is.EqualTo(new[] { "corr-consume-1" }));
        var seen = await response.Content.ReadFromJsonAsync<Forwarded>();
        Assert.That(seen!.Headers.Keys, Is.SubsetOf(ConsumeBatch.RequestHeaders).Using((IEqualityComparer<string>)StringComparer.OrdinalIgnoreCase));
        Assert.That(seen.Headers["Authorization"], Does.StartWith("Bearer "));
        Assert.That(seen.Headers[CorrelationId.Header], Is.EqualTo("corr-consume-1"));
        Assert.That(seen.Headers.Values, Has.None.Contains("u-victim"));
        Assert.That(seen.Headers["traceparent"], Does.Match("^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-0[01]$"),
            "Usage's span of the consume joins the caller's trace");
    }

    [Test]
    public async Task Passes_a_refusals_status_and_content_type_back()
    {
        _backend.ConsumeStatus = 402;
        using var response = await ConsumeAsync(_gateway, Body(2));
        Assert.That((int)response.StatusCode, Is.EqualTo(402));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/json"));
        Assert.That((await response.Content.ReadFromJsonAsync<Forwarded>())!.Path, Is.EqualTo(ConsumeBatch.ItemPath));
    }

    [Test]
    public async Task Refuses_a_consume_without_the_usage_scope_before_batching_it()
    {
        var before = _backend.Received.Count;
        using var anonymous = await ConsumeAsync(_gateway, Body(3), r => r.Headers.Authorization = null);
        using var user = await ConsumeAsync(_gateway, Body(3), r => r.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.User("u3")));
        Assert.That((anonymous.StatusCode, user.StatusCode), Is.EqualTo((HttpStatusCode.Unauthorized, HttpStatusCode.Forbidden)));
        Assert.That(_backend.Received.Count, Is.EqualTo(before));
    }

    [Test]
    public async Task Answers_502_with_a_problem_when_Usage_cannot_be_reached()
    {
        await using var gateway = new GatewayFactory(_backend.Url, new Dictionary<string, string?>
        {
            ["ReverseProxy:Clusters:usage:Destinations:main:Address"] = "http://127.0.0.1:9/", // discard port: nothing listens
        });
        using var response = await ConsumeAsync(gateway, Body(4));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadGateway));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
    }

    [TestCase("status")]
    [TestCase("garbage")]
    public async Task Answers_502_when_Usage_answers_a_batch_with_an_error_or_nonsense(string failure)
    {
        _backend.BatchFailure = failure;
        using var response = await ConsumeAsync(_gateway, Body(6));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadGateway));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));

        _backend.BatchFailure = null;
        using var next = await ConsumeAsync(_gateway, Body(7));
        Assert.That(next.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the senders go on");
    }

    [Test]
    public async Task Proxies_each_consume_on_its_own_when_batching_is_off()
    {
        await using var gateway = new GatewayFactory(_backend.Url, new Dictionary<string, string?> { ["Gateway:ConsumeBatching:Enabled"] = "false" });
        var before = _backend.Batches.Count;
        using var response = await ConsumeAsync(gateway, Body(5), r => r.Headers.TryAddWithoutValidation("X-Something-Else", "x"));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var seen = await response.Content.ReadFromJsonAsync<Forwarded>();
        Assert.That((seen!.Method, seen.Path), Is.EqualTo(("POST", ConsumeBatch.ItemPath)));
        Assert.That(seen.Headers.GetValueOrDefault("X-Something-Else"), Is.EqualTo("x"), "YARP forwarded the request as it came");
        Assert.That(_backend.Batches.Count, Is.EqualTo(before));
    }

    [Test]
    public async Task Takes_a_consume_with_a_valid_usage_token_past_the_authentication_middleware_and_any_other_through_it()
    {
        var logs = new AuthenticationLog();
        await using var gateway = new GatewayFactory(_backend.Url,
            new Dictionary<string, string?> { ["Logging:LogLevel:Microsoft.AspNetCore.Authentication"] = "Debug" },
            services => services.AddSingleton<ILoggerProvider>(logs));
        var before = _backend.Received.Count;

        using var shortcut = await ConsumeAsync(gateway, Body(8));
        Assert.That(shortcut.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(shortcut.Headers.Contains(CorrelationId.Header), "the correlation id middleware still ran");
        Assert.That(logs.Authenticated, Is.Zero, "a valid token with the scope skips the authentication middleware");

        // No Content-Length (chunked): the body limit is the middleware's to enforce, so the whole pipeline runs.
        using var chunked = await ConsumeAsync(gateway, Body(9), r =>
        {
            r.Content!.Headers.ContentLength = null;
            r.Headers.TransferEncodingChunked = true;
        });
        Assert.That(chunked.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(logs.Authenticated, Is.EqualTo(1), "a chunked consume went through the authentication middleware");

        // Refusals are the middleware's, as before: a token signed with another key, a body over the limit.
        var forged = Tokens.Create("svc-forged", scope: "billing.usage", key: "another-signing-key-of-at-least-32-characters");
        using var unauthorized = await ConsumeAsync(gateway, Body(10), r => r.Headers.Authorization = new AuthenticationHeaderValue("Bearer", forged));
        Assert.That(unauthorized.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(unauthorized.Headers.WwwAuthenticate.ToString(), Does.StartWith("Bearer"));
        using var tooLarge = await ConsumeAsync(gateway, Body(11).Insert(1, $"\"pad\":\"{new string('x', 70_000)}\","));
        Assert.That((int)tooLarge.StatusCode, Is.EqualTo(413));
        Assert.That(_backend.Received.Count - before, Is.EqualTo(2), "only the two accepted consumes reached Usage");
    }

    /// <summary>Counts the JWT bearer handler's "successfully authenticated" (its Debug event 8): the middleware ran.</summary>
    private sealed class AuthenticationLog : ILoggerProvider, ILogger
    {
        private int _authenticated;

        public int Authenticated => Volatile.Read(ref _authenticated);

        public ILogger CreateLogger(string categoryName) =>
            categoryName.StartsWith("Microsoft.AspNetCore.Authentication", StringComparison.Ordinal) ? this : Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (formatter(state, exception).Contains("was successfully authenticated", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref _authenticated);
            }
        }

        public void Dispose()
        {
        }
    }
}
