namespace Billing.EndToEnd.Tests;

[TestFixture]
public class A_running_Billing
{
    private static readonly string[] Services = ["subscriptions", "payments", "usage", "wallet"];

    [TestCaseSource(nameof(Services))]
    public async Task Each_service_is_ready_with_its_database_and_broker_checks_listed(string service)
    {
        using var api = new Api(TestEnvironment.ServiceUrl(service));
        var (status, body, _) = await api.GetAsync("/health/ready");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var checks = body.GetProperty("checks").EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!, c => c.GetProperty("status").GetString());
        Assert.That(checks, Does.ContainKey("database").WithValue("Healthy"));
        Assert.That(checks, Does.ContainKey("broker").WithValue("Healthy"));
    }

    [Test]
    public async Task The_gateway_is_ready_when_every_service_is_and_says_so()
    {
        using var api = Api.Gateway();
        var (status, body, _) = await api.GetAsync("/health/ready");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var services = body.GetProperty("checks")[0].GetProperty("data");
        foreach (var service in Services)
        {
            Assert.That(services.GetProperty(service).GetString(), Does.StartWith("Healthy").And.Contain("database=Healthy").And.Contain("broker=Healthy"));
        }
        Assert.That((await api.GetAsync("/health/live")).Status, Is.EqualTo(HttpStatusCode.OK));
    }

    [TestCaseSource(nameof(Services))]
    public async Task Each_service_publishes_its_OpenAPI_document(string service)
    {
        using var api = new Api(TestEnvironment.ServiceUrl(service));
        var (status, body, _) = await api.GetAsync("/openapi/v1.json");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(body.GetProperty("openapi").GetString(), Does.StartWith("3."));
    }
}

[TestFixture]
public class The_gateway_enforces_identity
{
    private static readonly string[] UserRoutes = ["/api/subscriptions/me", "/api/usage/me", "/api/wallet/me", "/api/payments/me", "/api/entitlements/me"];

    [TestCaseSource(nameof(UserRoutes))]
    public async Task Without_a_token_a_user_route_answers_401_problem_details(string path)
    {
        using var api = Api.Gateway();
        var (status, body, response) = await api.GetAsync(path);
        Assert.That(status, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
        Assert.That(body.GetProperty("status").GetInt32(), Is.EqualTo(401));
    }

    [TestCaseSource(nameof(BadTokens))]
    public async Task A_bad_token_is_refused(string description, string token)
    {
        using var api = Api.Gateway(token);
        var (status, _, _) = await api.GetAsync("/api/subscriptions/me");
        Assert.That(status, Is.EqualTo(HttpStatusCode.Unauthorized), description);
    }

    public static IEnumerable<object[]> BadTokens() =>
    [
        ["expired", Tokens.Create("u1", lifetime: TimeSpan.FromMinutes(-10))],
        ["signed with another key", Tokens.Create("u1", key: "another-key-that-is-long-enough-for-hs256-0000")],
        ["for another audience", Tokens.Create("u1", audience: "someone-else")],
        ["from another issuer", Tokens.Create("u1", issuer: "evil")],
        ["not a JWT", "not-a-jwt"],
    ];

    [TestCase("/api/usage/consume")]
    [TestCase("/api/usage/reservations")]
    public async Task A_user_token_cannot_call_an_internal_route(string path)
    {
        using var api = Api.Gateway(Tokens.User("u-plain"));
        var (status, body, _) = await api.PostAsync(path, new { userId = "u-plain", meter = "ai.generation", quantity = 1, idempotencyKey = "k1" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(body.GetProperty("status").GetInt32(), Is.EqualTo(403));
    }

    [TestCase("/api/admin/reconcile")]
    [TestCase("/api/admin/refunds")]
    public async Task Admin_routes_need_the_admin_scope(string path)
    {
        using var user = Api.Gateway(Tokens.User("u-plain"));
        Assert.That((await user.PostAsync(path)).Status, Is.EqualTo(HttpStatusCode.Forbidden));
        using var service = Api.Gateway(Tokens.Service());
        Assert.That((await service.PostAsync(path)).Status, Is.EqualTo(HttpStatusCode.Forbidden));
    }

    [Test]
    public async Task A_user_token_cannot_read_another_users_entitlements()
    {
        using var api = Api.Gateway(Tokens.User("u-a"));
        Assert.That((await api.GetAsync("/api/entitlements/u-b")).Status, Is.EqualTo(HttpStatusCode.Forbidden));
    }

    [Test]
    public async Task The_services_themselves_also_refuse_a_request_without_a_token()
    {
        using var api = new Api(TestEnvironment.ServiceUrl("usage"));
        Assert.That((await api.GetAsync("/api/usage/me")).Status, Is.EqualTo(HttpStatusCode.Unauthorized));
    }
}
