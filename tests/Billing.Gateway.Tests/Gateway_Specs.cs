using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy.Configuration;

namespace Billing.Gateway.Tests;

[TestFixture]
public class The_gateway
{
    private FakeBackend _backend = null!;
    private GatewayFactory _gateway = null!;

    /// <summary>API.md's table of paths (as seen through the gateway), their service and who may call them.</summary>
    public static readonly (string Method, string Path, string Service, string Policy)[] ApiMd =
    [
        ("GET", "/api/plans", "subscriptions", "anonymous"),
        ("GET", "/api/token-packs", "wallet", "anonymous"),
        ("POST", "/api/subscriptions/checkout", "subscriptions", "user"),
        ("GET", "/api/subscriptions/me", "subscriptions", "user"),
        ("GET", "/api/subscriptions/me/history", "subscriptions", "user"),
        ("POST", "/api/subscriptions/me/cancel", "subscriptions", "user"),
        ("POST", "/api/subscriptions/me/resume", "subscriptions", "user"),
        ("POST", "/api/subscriptions/me/change", "subscriptions", "user"),
        ("POST", "/api/billing-portal", "subscriptions", "user"),
        ("GET", "/api/usage/me", "usage", "user"),
        ("POST", "/api/usage/consume", "usage", "billing.usage"),
        ("POST", "/api/usage/reservations", "usage", "billing.usage"),
        ("POST", "/api/usage/reservations/res_1/commit", "usage", "billing.usage"),
        ("POST", "/api/usage/reservations/res_1/release", "usage", "billing.usage"),
        ("GET", "/api/entitlements/u42", "usage", "billing.usage"),
        ("GET", "/api/entitlements/me", "usage", "user"),
        ("POST", "/api/wallet/checkout", "wallet", "user"),
        ("GET", "/api/wallet/me", "wallet", "user"),
        ("GET", "/api/wallet/me/transactions?limit=10", "wallet", "user"),
        ("POST", "/webhooks/stripe", "payments", "anonymous"),
        ("GET", "/api/payments/me", "payments", "user"),
        ("POST", "/api/admin/refunds", "payments", "billing.admin"),
        ("POST", "/api/admin/reconcile", "payments", "billing.admin"),
        ("GET", "/api/admin/webhook-events?status=failed", "payments", "billing.admin"),
        ("POST", "/api/admin/webhook-events/evt_1/replay", "payments", "billing.admin"),
        ("GET", "/api/admin/usage/verify", "usage", "billing.admin"),
    ];

    [OneTimeSetUp]
    public async Task Start()
    {
        _backend = await FakeBackend.StartAsync();
        _gateway = new GatewayFactory(_backend.Url, new Dictionary<string, string?>
        {
            ["RateLimits:checkout:Burst"] = "3",
            ["RateLimits:checkout:PerMinute"] = "3",
            ["RateLimits:webhooks:Burst"] = "5",
            ["RateLimits:webhooks:PerMinute"] = "5",
        });
        _gateway.CreateClient().Dispose();
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _gateway.DisposeAsync();
        await _backend.DisposeAsync();
    }

    private static string TokenFor(string policy, string user = "u-gw") => policy switch
    {
        "user" => Tokens.User(user),
        "billing.usage" => Tokens.Service(),
        "billing.admin" => Tokens.Create(user, scope: "billing.admin"),
        _ => "",
    };

    private async Task<HttpResponseMessage> SendAsync(string method, string path, string? token = null, HttpContent? content = null,
        Action<HttpRequestMessage>? configure = null)
    {
        var client = _gateway.CreateClient();
        var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = content ?? (method == "POST" ? new StringContent("{}", Encoding.UTF8, "application/json") : null) };
        if (!string.IsNullOrEmpty(token))
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        configure?.Invoke(request);
        return await client.SendAsync(request);
    }

    private static string Unique(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..8];

    [Test]
    public void Routes_every_path_of_API_md_to_its_own_service_with_its_policy()
    {
        var config = _gateway.Services.GetRequiredService<IProxyConfigProvider>().GetConfig();
        Assert.That(config.Clusters.Select(c => c.ClusterId), Is.EquivalentTo(GatewayFactory.ServiceNames), "one cluster per service");
        foreach (var cluster in config.Clusters)
        {
            Assert.That(cluster.HealthCheck?.Active?.Enabled, Is.True, $"{cluster.ClusterId}: active health checks");
            Assert.That(cluster.HealthCheck?.Active?.Path, Is.EqualTo("/health/ready"));
        }
        foreach (var (method, path, service, policy) in ApiMd)
        {
            var bare = path.Split('?')[0];
            var matches = config.Routes.Where(r => (r.Match.Methods?.Contains(method) ?? true) && Matches(r.Match.Path!, bare)).ToList();
            // A literal segment wins over a parameter (/api/entitlements/me over /api/entitlements/{userId}).
            var route = matches.OrderBy(r => r.Match.Path!.Count(c => c == '{')).FirstOrDefault();
            Assert.That(route, Is.Not.Null, $"{method} {path} has a route");
            Assert.That((route!.ClusterId, route.AuthorizationPolicy), Is.EqualTo((service, policy)), $"{method} {path}");
        }
    }

    private static bool Matches(string template, string path) =>
        Regex.IsMatch(path, "^" + Regex.Replace(Regex.Escape(template), @"\\\{[^/]+?}", "[^/]+") + "$");

    [TestCaseSource(nameof(ApiMd))]
    public async Task Forwards_each_API_md_path_unchanged_to_the_service_with_the_right_token_and_refuses_it_without((string Method, string Path, string Service, string Policy) row)
    {
        var (method, path, _, policy) = row;
        using (var allowed = await SendAsync(method, path, TokenFor(policy, Unique("u-route"))))
        {
            Assert.That(allowed.StatusCode, Is.EqualTo(HttpStatusCode.OK), $"{method} {path}");
            var seen = await allowed.Content.ReadFromJsonAsync<Forwarded>();
            Assert.That((seen!.Method, seen.Path), Is.EqualTo((method, path)));
        }
        if (policy == "anonymous")
        {
            return;
        }
        using var without = await SendAsync(method, path);
        Assert.That(without.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(without.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
        if (policy != "user")
        {
            using var plainUser = await SendAsync(method, path, Tokens.User(Unique("u-plain")));
            Assert.That(plainUser.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "a user token without the scope");
        }
    }

    [TestCase("GET", "/api/unknown")]
    [TestCase("GET", "/internal/wallet/u42")]
    [TestCase("POST", "/internal/wallet/debit")]
    [TestCase("DELETE", "/api/subscriptions/me")]
    [TestCase("GET", "/webhooks/stripe")]
    [TestCase("POST", "/api/plans")]
    public async Task Forwards_nothing_that_API_md_does_not_list(string method, string path)
    {
        var before = _backend.Received.Count;
        using var response = await SendAsync(method, path, Tokens.Create("u-all", scope: "billing.usage billing.admin"));
        Assert.That((int)response.StatusCode, Is.AnyOf(404, 405));
        Assert.That(_backend.Received.Count, Is.EqualTo(before));
    }

    [Test]
    public async Task Passes_the_webhook_body_byte_for_byte_without_a_token()
    {
        // Whitespace, key order, unicode escapes and a trailing newline: the signature covers exactly these bytes.
        var body = "{ \"id\" : \"evt_1\",\n\t\"type\":\"invoice.paid\", \"note\":\"caf\\u00e9 \u00e9\" }\r\n";
        var bytes = Encoding.UTF8.GetBytes(body);
        using var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
        using var response = await SendAsync("POST", "/webhooks/stripe", content: content,
            configure: r => r.Headers.TryAddWithoutValidation("Stripe-Signature", "t=1,v1=abc"));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var seen = await response.Content.ReadFromJsonAsync<Forwarded>();
        Assert.That(seen!.BodySha256, Is.EqualTo(Convert.ToHexStringLower(SHA256.HashData(bytes))));
        Assert.That(seen.Headers["Stripe-Signature"], Is.EqualTo("t=1,v1=abc"));
    }

    [Test]
    public async Task Forwards_a_refunds_Idempotency_Key_unchanged()
    {
        // Payments keys the Stripe refund on it: a gateway that dropped it would turn every retry into a new refund.
        using var response = await SendAsync("POST", "/api/admin/refunds", TokenFor("billing.admin"),
            configure: r => r.Headers.TryAddWithoutValidation("Idempotency-Key", "refund-ticket-4711:2"));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var seen = await response.Content.ReadFromJsonAsync<Forwarded>();
        Assert.That(seen!.Headers["Idempotency-Key"], Is.EqualTo("refund-ticket-4711:2"));
    }

    [Test]
    public async Task Drops_identity_headers_a_client_sends()
    {
        using var response = await SendAsync("GET", "/api/subscriptions/me", Tokens.User("u-real"), configure: r =>
        {
            r.Headers.TryAddWithoutValidation("X-User-Id", "u-victim");
            r.Headers.TryAddWithoutValidation("X-Forwarded-User", "u-victim");
            r.Headers.TryAddWithoutValidation("X-MS-CLIENT-PRINCIPAL-ID", "u-victim");
            r.Headers.TryAddWithoutValidation("X-Auth-Request-User", "u-victim");
        });
        var seen = await response.Content.ReadFromJsonAsync<Forwarded>();
        Assert.That(seen!.Headers.Values, Has.None.Contains("u-victim"));
    }

    [Test]
    public async Task Limits_checkouts_per_user_with_429_Retry_After_and_a_problem()
    {
        var user = Unique("u-rl");
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            using var r = await SendAsync("POST", "/api/subscriptions/checkout", Tokens.User(user));
            statuses.Add(r.StatusCode);
        }
        Assert.That(statuses, Is.EqualTo(new[] { HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));

        using var refused = await SendAsync("POST", "/api/wallet/checkout", Tokens.User(user));
        Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests), "both checkouts share the user's budget");
        Assert.That(refused.Headers.RetryAfter?.Delta, Is.GreaterThan(TimeSpan.Zero));
        Assert.That(refused.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
        var problem = await refused.Content.ReadFromJsonAsync<JsonElement>();
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("rate_limited"));

        using var other = await SendAsync("POST", "/api/subscriptions/checkout", Tokens.User(Unique("u-other")));
        Assert.That(other.StatusCode, Is.EqualTo(HttpStatusCode.OK), "another user is not affected");
        using var read = await SendAsync("GET", "/api/subscriptions/me", Tokens.User(user));
        Assert.That(read.StatusCode, Is.EqualTo(HttpStatusCode.OK), "reads are not limited");
    }

    [Test]
    public async Task Limits_the_webhook_route_per_client_address()
    {
        // A fresh gateway: the address budget is shared by every test of this fixture.
        await using var gateway = new GatewayFactory(_backend.Url, new Dictionary<string, string?> { ["RateLimits:webhooks:Burst"] = "5", ["RateLimits:webhooks:PerMinute"] = "5" });
        var client = gateway.CreateClient();
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 6; i++)
        {
            using var r = await client.PostAsync("/webhooks/stripe", new StringContent("{}"));
            statuses.Add(r.StatusCode);
        }
        Assert.That(statuses.Take(5), Is.All.EqualTo(HttpStatusCode.OK));
        Assert.That(statuses[5], Is.EqualTo(HttpStatusCode.TooManyRequests));
    }

    [Test]
    public async Task Refuses_a_body_over_the_routes_limit_with_413_before_forwarding()
    {
        var before = _backend.Received.Count;
        using var big = await SendAsync("POST", "/api/usage/consume", Tokens.Service(),
            new StringContent("{\"pad\":\"" + new string('x', 70 * 1024) + "\"}", Encoding.UTF8, "application/json"));
        Assert.That(big.StatusCode, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge));
        var problem = await big.Content.ReadFromJsonAsync<JsonElement>();
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("payload_too_large"));
        Assert.That(_backend.Received.Count, Is.EqualTo(before));

        using var webhook = await SendAsync("POST", "/webhooks/stripe",
            content: new StringContent("{\"pad\":\"" + new string('x', 512 * 1024) + "\"}", Encoding.UTF8, "application/json"));
        Assert.That(webhook.StatusCode, Is.EqualTo(HttpStatusCode.OK), "webhooks may be up to 1 MiB");
    }

    [Test]
    public async Task Answers_CORS_preflights_only_for_configured_origins()
    {
        using var allowed = await SendAsync("OPTIONS", "/api/subscriptions/checkout", configure: r =>
        {
            r.Headers.Add("Origin", "https://app.example.com");
            r.Headers.Add("Access-Control-Request-Method", "POST");
            r.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
        });
        Assert.That(allowed.Headers.GetValues("Access-Control-Allow-Origin"), Is.EqualTo(new[] { "https://app.example.com" }));

        using var other = await SendAsync("OPTIONS", "/api/subscriptions/checkout", configure: r =>
        {
            r.Headers.Add("Origin", "https://evil.example.net");
            r.Headers.Add("Access-Control-Request-Method", "POST");
        });
        Assert.That(other.Headers.Contains("Access-Control-Allow-Origin"), Is.False);

        using var simple = await SendAsync("GET", "/api/plans", configure: r => r.Headers.Add("Origin", "https://quiz.example.com"));
        Assert.That(simple.Headers.GetValues("Access-Control-Allow-Origin"), Is.EqualTo(new[] { "https://quiz.example.com" }));
    }

    [Test]
    public async Task Keeps_a_well_formed_correlation_id_forwards_it_and_returns_it_once()
    {
        using var response = await SendAsync("GET", "/api/plans", configure: r => r.Headers.Add("X-Correlation-Id", "req-123.abc"));
        Assert.That(response.Headers.GetValues("X-Correlation-Id"), Is.EqualTo(new[] { "req-123.abc" }));
        var seen = await response.Content.ReadFromJsonAsync<Forwarded>();
        Assert.That(seen!.Headers["X-Correlation-Id"], Is.EqualTo("req-123.abc"));
    }

    [TestCase(null)]
    [TestCase("bad id with spaces")]
    [TestCase("x\"};DROP TABLE outbox;--")]
    public async Task Makes_a_new_correlation_id_when_none_or_a_malformed_one_is_sent(string? sent)
    {
        using var response = await SendAsync("GET", "/api/plans", configure: r =>
        {
            if (sent is not null)
            {
                r.Headers.TryAddWithoutValidation("X-Correlation-Id", sent);
            }
        });
        var id = response.Headers.GetValues("X-Correlation-Id").Single();
        Assert.That(id, Does.Match("^[0-9a-f]{32}$"));
        var seen = await response.Content.ReadFromJsonAsync<Forwarded>();
        Assert.That(seen!.Headers["X-Correlation-Id"], Is.EqualTo(id));

        using var problem = await SendAsync("GET", "/api/subscriptions/me");
        var body = await problem.Content.ReadFromJsonAsync<JsonElement>();
        Assert.That(body.GetProperty("correlationId").GetString(), Is.EqualTo(problem.Headers.GetValues("X-Correlation-Id").Single()));
    }

    [Test]
    public async Task Serves_an_API_reference_over_each_services_OpenAPI_document()
    {
        using var docs = await SendAsync("GET", "/docs");
        Assert.That(docs.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(docs.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/html"));
        var html = await docs.Content.ReadAsStringAsync();
        foreach (var service in GatewayFactory.ServiceNames)
        {
            Assert.That(html, Does.Contain($"/openapi/{service}.json").Or.Contain(service), service);
            using var document = await SendAsync("GET", $"/openapi/{service}.json");
            Assert.That(document.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            var json = await document.Content.ReadFromJsonAsync<JsonElement>();
            Assert.That(json.GetProperty("openapi").GetString(), Does.StartWith("3."));
        }
    }
}
