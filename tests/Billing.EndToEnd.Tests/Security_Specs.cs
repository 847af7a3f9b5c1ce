using System.Text;

namespace Billing.EndToEnd.Tests;

/// <summary>What one user (or a stranger) sees of another user's account: a snapshot of everything B can read.</summary>
internal static class AccountSnapshot
{
    public static readonly string[] MePaths =
    [
        "/api/subscriptions/me", "/api/subscriptions/me/history", "/api/usage/me", "/api/entitlements/me",
        "/api/wallet/me", "/api/wallet/me/transactions", "/api/payments/me",
    ];

    public static async Task<string> TakeAsync(string user)
    {
        using var api = Api.Gateway(Tokens.User(user));
        var parts = new List<string>();
        foreach (var path in MePaths)
        {
            var (status, body, _) = await api.GetAsync(path);
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), path);
            parts.Add(path + " " + body.GetRawText());
        }
        return string.Join("\n", parts);
    }

    /// <summary>A user with something to lose: tokens granted by an admin.</summary>
    public static async Task<string> NewVictimAsync(string prefix)
    {
        var victim = prefix + "-" + Guid.NewGuid().ToString("N")[..8];
        using var admin = Api.Gateway(Tokens.Admin());
        var (status, body, _) = await admin.PostAsync($"/api/admin/wallet/{victim}/grants",
            new { amount = 1000, idempotencyKey = "grant-" + victim, reason = "security test" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        // Usage shows the balance too, once TokensGranted reached it over RabbitMQ: wait, so the snapshot is settled.
        using var api = Api.Gateway(Tokens.User(victim));
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/usage/me")).Body,
            b => b.ValueKind == JsonValueKind.Object && b.GetProperty("tokens").GetProperty("balance").GetInt64() == 1000, "Usage to see the granted tokens");
        return victim;
    }
}

[TestFixture]
[NonParallelizable]
public class One_user_cannot_touch_another
{
    [Test]
    public async Task A_cannot_read_or_change_anything_of_B_through_any_me_or_id_taking_endpoint()
    {
        var b = await AccountSnapshot.NewVictimAsync("e2e-sec-b");
        var a = "e2e-sec-a-" + Guid.NewGuid().ToString("N")[..8];
        var before = await AccountSnapshot.TakeAsync(b);
        Assert.That(before, Does.Contain("\"balance\":1000"));

        var tokenA = Tokens.User(a);
        using var asA = Api.Gateway(tokenA);
        foreach (var path in AccountSnapshot.MePaths)
        {
            // B's id in the query, and B's identity in headers a careless service might read.
            var (status, body, _) = await SendAsync(tokenA, HttpMethod.Get, path + "?userId=" + b + "&user=" + b, null, b);
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), path);
            Assert.That(body.GetRawText(), Does.Not.Contain(b), $"{path} shows nothing of B");
        }
        Assert.That((await asA.GetAsync("/api/wallet/me")).Body.GetProperty("balance").GetInt64(), Is.EqualTo(0), "A sees A's own wallet");

        // Changes A asks for with B's id in the body or headers act on A (who has nothing to change), never on B.
        foreach (var path in new[] { "/api/subscriptions/me/cancel", "/api/subscriptions/me/resume", "/api/subscriptions/me/change", "/api/billing-portal" })
        {
            var (status, _, _) = await SendAsync(tokenA, HttpMethod.Post, path, $$"""{"userId":"{{b}}","planId":"pro","interval":"month"}""", b);
            Assert.That((int)status, Is.LessThan(500), path);
        }
        var idTaking = new (HttpMethod Method, string Path)[]
        {
            (HttpMethod.Get, $"/api/entitlements/{b}"),
            (HttpMethod.Post, $"/api/admin/wallet/{b}/grants"),
            (HttpMethod.Post, "/api/usage/consume"),
            (HttpMethod.Post, "/api/usage/reservations"),
            (HttpMethod.Post, "/api/admin/refunds"),
            (HttpMethod.Post, "/api/admin/webhook-events/evt_x/replay"),
        };
        foreach (var (method, path) in idTaking)
        {
            var (status, _, _) = await SendAsync(tokenA, method, path,
                $$"""{"userId":"{{b}}","meter":"ai.generation","quantity":1,"idempotencyKey":"{{Guid.NewGuid()}}","amount":5,"paymentId":"in_x"}""", b);
            Assert.That(status, Is.EqualTo(HttpStatusCode.Forbidden), $"{method} {path} with A's user token");
        }
        using var direct = new Api(TestEnvironment.ServiceUrl("wallet"), Tokens.User(a));
        Assert.That((await direct.GetAsync($"/internal/wallet/{b}")).Status, Is.EqualTo(HttpStatusCode.Forbidden), "internal wallet API, even directly");
        Assert.That((await direct.PostAsync("/internal/wallet/debit", new { userId = b, amount = 5, idempotencyKey = "x" })).Status, Is.EqualTo(HttpStatusCode.Forbidden));
        using var viaGateway = Api.Gateway(Tokens.Service());
        Assert.That((await viaGateway.GetAsync($"/internal/wallet/{b}")).Status, Is.EqualTo(HttpStatusCode.NotFound), "not routed by the gateway");

        Assert.That(await AccountSnapshot.TakeAsync(b), Is.EqualTo(before));
    }

    internal static async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> SendAsync(string? token, HttpMethod method, string path, string? body, string spoofedUser)
    {
        using var http = new HttpClient { BaseAddress = TestEnvironment.GatewayUrl };
        using var request = new HttpRequestMessage(method, path);
        if (token is not null)
        {
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        }
        foreach (var header in new[] { "X-User-Id", "X-User", "X-Forwarded-User", "X-Auth-Request-User", "X-MS-CLIENT-PRINCIPAL-ID", "Sub" })
        {
            request.Headers.TryAddWithoutValidation(header, spoofedUser);
        }
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }
        var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        var json = text.Length > 0 && (response.Content.Headers.ContentType?.MediaType?.Contains("json") ?? false) ? JsonDocument.Parse(text).RootElement.Clone() : default;
        return (response.StatusCode, json, response);
    }
}

[TestFixture]
[NonParallelizable]
public class Bad_credentials_change_nothing
{
    private static readonly (string Method, string Path, string Body)[] Protected =
    [
        ("GET", "/api/subscriptions/me", ""), ("POST", "/api/subscriptions/checkout", """{"planId":"pro","interval":"month"}"""),
        ("POST", "/api/subscriptions/me/cancel", "{}"), ("POST", "/api/subscriptions/me/change", """{"planId":"pro","interval":"year"}"""),
        ("POST", "/api/billing-portal", "{}"), ("GET", "/api/usage/me", ""), ("GET", "/api/entitlements/me", ""),
        ("GET", "/api/wallet/me", ""), ("POST", "/api/wallet/checkout", """{"packId":"starter"}"""), ("GET", "/api/payments/me", ""),
        ("POST", "/api/usage/consume", """{"userId":"VICTIM","meter":"ai.generation","quantity":1,"idempotencyKey":"KEY"}"""),
        ("GET", "/api/entitlements/VICTIM", ""), ("POST", "/api/admin/refunds", """{"paymentId":"in_x"}"""),
        ("POST", "/api/admin/wallet/VICTIM/grants", """{"amount":5,"idempotencyKey":"KEY"}"""),
        ("POST", "/api/admin/wallet/VICTIM/adjustments", """{"amount":-5,"idempotencyKey":"KEY","reason":"r"}"""),
    ];

    public static IEnumerable<TestCaseData> BadTokens()
    {
        yield return new TestCaseData("missing", null);
        yield return new TestCaseData("expired", "expired");
        yield return new TestCaseData("signed with another key", "wrong-key");
        yield return new TestCaseData("for another audience", "wrong-audience");
        yield return new TestCaseData("from another issuer", "wrong-issuer");
        yield return new TestCaseData("not yet valid", "not-yet-valid");
        yield return new TestCaseData("unsigned (alg none)", "alg-none");
        yield return new TestCaseData("garbage", "garbage");
    }

    private static string? Token(string? kind, string victim) => kind switch
    {
        null => null,
        "expired" => Tokens.Create(victim, scope: "billing.usage billing.admin", lifetime: TimeSpan.FromMinutes(-10)),
        "wrong-key" => Tokens.Create(victim, scope: "billing.usage billing.admin", key: "another-key-that-is-long-enough-for-hs256-0000"),
        "wrong-audience" => Tokens.Create(victim, scope: "billing.usage billing.admin", audience: "someone-else"),
        "wrong-issuer" => Tokens.Create(victim, scope: "billing.usage billing.admin", issuer: "evil"),
        "not-yet-valid" => Tokens.Create(victim, scope: "billing.usage billing.admin", notBefore: DateTime.UtcNow.AddHours(1), lifetime: TimeSpan.FromHours(2)),
        "alg-none" => AlgNone(victim),
        _ => "not.a.jwt",
    };

    private static string AlgNone(string subject)
    {
        static string B64(string s) => Convert.ToBase64String(Encoding.UTF8.GetBytes(s)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var exp = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds();
        return B64("""{"alg":"none","typ":"JWT"}""") + "." +
            B64($$"""{"sub":"{{subject}}","iss":"billing-local","aud":"billing","exp":{{exp}},"scope":"billing.usage billing.admin"}""") + ".";
    }

    [TestCaseSource(nameof(BadTokens))]
    public async Task Every_protected_route_refuses_a_bad_token_with_401_and_the_account_stays_as_it_was(string description, string? kind)
    {
        var victim = await AccountSnapshot.NewVictimAsync("e2e-sec-tok");
        var before = await AccountSnapshot.TakeAsync(victim);
        using var http = new HttpClient { BaseAddress = TestEnvironment.GatewayUrl };
        foreach (var (method, path, body) in Protected)
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), path.Replace("VICTIM", victim));
            if (Token(kind, victim) is { } token)
            {
                request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
            }
            request.Headers.TryAddWithoutValidation("X-User-Id", victim);
            if (body.Length > 0)
            {
                request.Content = new StringContent(body.Replace("VICTIM", victim).Replace("KEY", Guid.NewGuid().ToString()), Encoding.UTF8, "application/json");
            }
            using var response = await http.SendAsync(request);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), $"{description}: {method} {path}");
        }
        Assert.That(await AccountSnapshot.TakeAsync(victim), Is.EqualTo(before));
    }

    [Test]
    public async Task Admin_endpoints_refuse_user_and_service_tokens_and_change_nothing()
    {
        var victim = await AccountSnapshot.NewVictimAsync("e2e-sec-adm");
        var before = await AccountSnapshot.TakeAsync(victim);
        var admin = new (string Method, string Path)[]
        {
            ("POST", "/api/admin/refunds"), ("POST", "/api/admin/reconcile"), ("GET", "/api/admin/webhook-events?status=failed"),
            ("POST", "/api/admin/webhook-events/evt_x/replay"), ("POST", $"/api/admin/wallet/{victim}/grants"),
            ("POST", $"/api/admin/wallet/{victim}/adjustments"), ("GET", "/api/admin/wallet/verify"), ("GET", "/api/admin/subscriptions/verify"),
            ("GET", "/api/admin/usage/verify"),
        };
        foreach (var token in new[] { Tokens.User(victim), Tokens.Service(), Tokens.Create(victim, scope: "billing.adminx billing") })
        {
            using var api = Api.Gateway(token);
            foreach (var (method, path) in admin)
            {
                var (status, _, _) = await api.SendAsync(new HttpMethod(method), path,
                    method == "POST" ? new { amount = 500, idempotencyKey = Guid.NewGuid().ToString(), paymentId = "in_x", force = true } : null);
                Assert.That(status, Is.EqualTo(HttpStatusCode.Forbidden), $"{method} {path}");
            }
        }
        Assert.That(await AccountSnapshot.TakeAsync(victim), Is.EqualTo(before));
    }

    [Test]
    public async Task A_user_token_cannot_consume_or_reserve_for_anyone()
    {
        var victim = await AccountSnapshot.NewVictimAsync("e2e-sec-scope");
        var before = await AccountSnapshot.TakeAsync(victim);
        using var api = Api.Gateway(Tokens.User(victim, groups: ["billing.usage"]));
        var consume = new { userId = victim, meter = "ai.generation", quantity = 1, idempotencyKey = Guid.NewGuid().ToString() };
        Assert.That((await api.PostAsync("/api/usage/consume", consume)).Status, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await api.PostAsync("/api/usage/reservations", consume)).Status, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(await AccountSnapshot.TakeAsync(victim), Is.EqualTo(before));
    }
}

[TestFixture]
[NonParallelizable]
public class Hostile_input_changes_nothing
{
    private static readonly string[] Nasty =
    [
        "' OR '1'='1", "'; DROP TABLE wallets; --", "\" OR \"\"=\"", "1; SELECT pg_sleep(5)", "%27%20OR%201=1--",
        "{\"$ne\":null}", "\"},{\"userId\":\"admin", "\\u0000", "..%2f..%2fetc%2fpasswd", "<script>alert(1)</script>",
        "${jndi:ldap://x}", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", new string('a', 4000),
    ];

    [Test]
    public async Task Ids_and_strings_with_SQL_and_JSON_metacharacters_get_a_4xx_or_a_clean_answer_never_a_500()
    {
        var victim = await AccountSnapshot.NewVictimAsync("e2e-sec-meta");
        var before = await AccountSnapshot.TakeAsync(victim);
        using var service = Api.Gateway(Tokens.Service());
        using var admin = Api.Gateway(Tokens.Admin());
        foreach (var nasty in Nasty)
        {
            var escaped = Uri.EscapeDataString(nasty);
            using var user = Api.Gateway(Tokens.User(nasty.Length > 200 ? nasty[..200] : nasty));
            var answers = new List<(string What, HttpStatusCode Status)>
            {
                ("entitlements/{id}", (await service.GetAsync($"/api/entitlements/{escaped}")).Status),
                ("consume", (await service.PostAsync("/api/usage/consume", new { userId = nasty, meter = nasty, quantity = 1, idempotencyKey = nasty })).Status),
                ("replay", (await admin.PostAsync($"/api/admin/webhook-events/{escaped}/replay")).Status),
                ("refund", (await admin.PostAsync("/api/admin/refunds", new { paymentId = nasty, reason = nasty })).Status),
                ("checkout", (await user.PostAsync("/api/subscriptions/checkout", new { planId = nasty, interval = nasty })).Status),
                ("wallet checkout", (await user.PostAsync("/api/wallet/checkout", new { packId = nasty })).Status),
                ("change", (await user.PostAsync("/api/subscriptions/me/change", new { planId = nasty, interval = "month" })).Status),
                ("transactions", (await user.GetAsync($"/api/wallet/me/transactions?limit=5&cursor={escaped}")).Status),
                ("history", (await user.GetAsync($"/api/usage/me/history?from={escaped}&granularity={escaped}")).Status),
                ("events", (await admin.GetAsync($"/api/admin/webhook-events?status={escaped}&limit=5")).Status),
            };
            foreach (var (what, status) in answers)
            {
                Assert.That((int)status, Is.LessThan(500), $"{what} with {nasty[..Math.Min(40, nasty.Length)]}");
            }
        }
        Assert.That(await AccountSnapshot.TakeAsync(victim), Is.EqualTo(before));
    }

    [Test]
    public async Task Oversized_and_malformed_bodies_get_413_or_400_problems()
    {
        var victim = await AccountSnapshot.NewVictimAsync("e2e-sec-body");
        var before = await AccountSnapshot.TakeAsync(victim);
        using var service = Api.Gateway(Tokens.Service());
        var big = "{\"userId\":\"" + victim + "\",\"meter\":\"ai.generation\",\"quantity\":1,\"idempotencyKey\":\"" + new string('k', 80 * 1024) + "\"}";
        var (status, problem, response) = await service.PostAsync("/api/usage/consume", big);
        Assert.That(status, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("payload_too_large"));

        // Chunked (no Content-Length): cut off by the server at the same limit.
        using var http = new HttpClient { BaseAddress = TestEnvironment.GatewayUrl };
        using var chunked = new HttpRequestMessage(HttpMethod.Post, "/api/usage/consume") { Content = new PushStreamContentLike(Encoding.UTF8.GetBytes(big)) };
        chunked.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", Tokens.Service());
        using (var answer = await http.SendAsync(chunked))
        {
            Assert.That((int)answer.StatusCode, Is.InRange(400, 499), "chunked oversized body");
        }

        foreach (var malformed in new[] { "{", "{\"userId\":", "[1,2", "nul", "{\"userId\":\"" + victim + "\",}", new string('[', 5000), "\u0000\u0001", "{\"quantity\":1e400}" })
        {
            var (s, body, r) = await service.PostAsync("/api/usage/consume", malformed);
            Assert.That((int)s, Is.InRange(400, 499), malformed[..Math.Min(20, malformed.Length)]);
            Assert.That(r.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
        }
        Assert.That(await AccountSnapshot.TakeAsync(victim), Is.EqualTo(before));
    }

    /// <summary>Content without a known length, so HttpClient sends it chunked.</summary>
    private sealed class PushStreamContentLike(byte[] bytes) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => stream.WriteAsync(bytes).AsTask();

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}

[TestFixture]
[NonParallelizable]
public class The_gateway_protects_the_services
{
    [Test]
    public async Task Checkouts_are_limited_per_user_with_429_and_Retry_After_while_other_users_go_on()
    {
        var user = "e2e-rl-" + Guid.NewGuid().ToString("N")[..8];
        using var api = Api.Gateway(Tokens.User(user));
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 25; i++)
        {
            statuses.Add((await api.PostAsync("/api/subscriptions/checkout", new { planId = "no-such-plan", interval = "month" })).Status);
        }
        Assert.That(statuses.Take(20), Is.All.EqualTo(HttpStatusCode.BadRequest), "the first 20 reach Subscriptions (unknown plan)");
        Assert.That(statuses.Skip(20), Has.Some.EqualTo(HttpStatusCode.TooManyRequests));
        var (status, problem, response) = await api.PostAsync("/api/subscriptions/checkout", new { planId = "no-such-plan", interval = "month" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.TooManyRequests));
        Assert.That(response.Headers.RetryAfter?.Delta, Is.GreaterThan(TimeSpan.Zero));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("rate_limited"));

        using var other = Api.Gateway(Tokens.User(user + "-other"));
        Assert.That((await other.PostAsync("/api/subscriptions/checkout", new { planId = "no-such-plan", interval = "month" })).Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await api.GetAsync("/api/subscriptions/me")).Status, Is.EqualTo(HttpStatusCode.OK), "reads are not limited");
    }

    [Test]
    public async Task Every_request_has_a_correlation_id_that_is_kept_when_well_formed()
    {
        using var http = new HttpClient { BaseAddress = TestEnvironment.GatewayUrl };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/plans");
        request.Headers.Add("X-Correlation-Id", "e2e-corr-123");
        using var response = await http.SendAsync(request);
        Assert.That(response.Headers.GetValues("X-Correlation-Id"), Is.EqualTo(new[] { "e2e-corr-123" }));
        using var problem = await http.GetAsync("/api/subscriptions/me");
        var id = problem.Headers.GetValues("X-Correlation-Id").Single();
        Assert.That(id, Does.Match("^[0-9a-f]{32}$"));
        var body = await problem.Content.ReadFromJsonAsync<JsonElement>();
        Assert.That(body.GetProperty("correlationId").GetString(), Is.EqualTo(id));
    }

    [Test]
    public async Task Serves_the_API_reference_and_each_services_OpenAPI_document()
    {
        using var http = new HttpClient { BaseAddress = TestEnvironment.GatewayUrl };
        using var docs = await http.GetAsync("/docs");
        Assert.That(docs.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        foreach (var service in new[] { "subscriptions", "payments", "usage", "wallet" })
        {
            var document = await http.GetFromJsonAsync<JsonElement>($"/openapi/{service}.json");
            Assert.That(document.GetProperty("openapi").GetString(), Does.StartWith("3."), service);
            Assert.That(document.GetProperty("paths").EnumerateObject().Count(), Is.GreaterThan(0), service);
        }
    }

    [Test]
    public async Task A_webhook_replayed_after_the_tolerance_is_refused_and_not_stored()
    {
        var id = "evt_e2e_replay_" + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow.AddMinutes(-7).ToUnixTimeSeconds();
        var body = "{\"id\":\"" + id + "\",\"object\":\"event\",\"api_version\":\"2026-10-28.endive\",\"created\":" + created +
            ",\"data\":{\"object\":{\"id\":\"cus_x\",\"object\":\"customer\"}},\"livemode\":false,\"pending_webhooks\":1,\"request\":{\"id\":null,\"idempotency_key\":null},\"type\":\"customer.created\"}";
        using var http = new HttpClient { BaseAddress = TestEnvironment.GatewayUrl };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/stripe") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.TryAddWithoutValidation("Stripe-Signature", StripeSignatures.Header(body, at: DateTimeOffset.UtcNow.AddMinutes(-7)));
        using var response = await http.SendAsync(request);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        using var admin = Api.Gateway(Tokens.Admin());
        var (_, events, _) = await admin.GetAsync("/api/admin/webhook-events?limit=500");
        Assert.That(events.GetProperty("items").EnumerateArray().Any(e => e.GetProperty("id").GetString() == id), Is.False);
    }
}
