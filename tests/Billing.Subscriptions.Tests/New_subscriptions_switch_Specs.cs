using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;

namespace Billing.Subscriptions.Tests;

/// <summary>The Subscriptions API on the real PostgreSQL and RabbitMQ, with new subscriptions switched off.</summary>
[TestFixture]
[NonParallelizable]
public class With_new_subscriptions_switched_off
{
    private WebApplicationFactory<Program> _factory = null!;

    [OneTimeSetUp]
    public void Start()
    {
        var settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Database"] = TestEnvironment.Database("subs_switch"),
            ["RabbitMq:Host"] = TestEnvironment.RabbitHost,
            ["RabbitMq:Port"] = TestEnvironment.RabbitPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["RabbitMq:QueuePrefix"] = TestEnvironment.RunId + "-switch-",
            ["BILLING_JWT_SIGNING_KEY"] = TestEnvironment.JwtSigningKey,
            ["BILLING_CATALOG"] = Path.Combine(TestEnvironment.Repo, "deploy", "catalogs", "default.json"),
            ["STRIPE_SECRET_KEY"] = "sk_test_unused",
            ["STRIPE_API_BASE"] = "http://127.0.0.1:9", // nothing listens: the switch must answer before Stripe is asked
            ["STRIPE_RETRIES"] = "0",
            ["BILLING_NEW_SUBSCRIPTIONS"] = "off",
        };
        foreach (var (key, value) in settings)
        {
            Environment.SetEnvironmentVariable(key.Replace(":", "__", StringComparison.Ordinal), value);
        }
        _factory = new WebApplicationFactory<Program>();
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _factory.Dispose();
        foreach (var key in new[] { "ConnectionStrings__Database", "RabbitMq__Host", "RabbitMq__Port", "RabbitMq__QueuePrefix", "BILLING_JWT_SIGNING_KEY",
                     "BILLING_CATALOG", "STRIPE_SECRET_KEY", "STRIPE_API_BASE", "STRIPE_RETRIES", "BILLING_NEW_SUBSCRIPTIONS" })
        {
            Environment.SetEnvironmentVariable(key, null);
        }
    }

    private HttpClient Client(string token)
    {
        var client = _factory.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    [Test]
    public async Task Checkout_answers_503_and_asks_nothing_of_Stripe()
    {
        using var client = Client(Tokens.User("u-switch"));
        using var response = await client.PostAsJsonAsync("/api/subscriptions/checkout", new { planId = "pro", interval = "month" });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("new_subscriptions_disabled"));
    }

    [Test]
    public async Task Existing_users_still_see_their_subscription_and_the_plans()
    {
        using var client = Client(Tokens.User("u-switch-2"));
        using var me = await client.GetAsync("/api/subscriptions/me");
        Assert.That(me.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        using var plans = await client.GetAsync("/api/plans");
        Assert.That(plans.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task A_bad_request_is_still_a_400_not_a_503()
    {
        using var client = Client(Tokens.User("u-switch-3"));
        using var response = await client.PostAsJsonAsync("/api/subscriptions/checkout", new { planId = "gold", interval = "month" });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
    }
}
