using System.Net;
using System.Net.Http.Json;

namespace Billing.Gateway.Tests;

/// <summary>
/// The demo's sign-in mints a token for any user id: it is served only on the Stripe simulator, so a BILLING_DEMO=1
/// copied into a production configuration hands out nothing.
/// </summary>
[TestFixture]
public class The_demo_sign_in
{
    private static async Task<HttpStatusCode> SignInAsync(IReadOnlyDictionary<string, string?> settings)
    {
        await using var backend = await FakeBackend.StartAsync();
        await using var gateway = new GatewayFactory(backend.Url, settings);
        using var client = gateway.CreateClient();
        using var response = await client.PostAsJsonAsync("/demo/api/session", new { userId = "u42" });
        return response.StatusCode;
    }

    [Test]
    public async Task Is_served_on_the_simulator()
    {
        Assert.That(await SignInAsync(new Dictionary<string, string?>
        {
            ["BILLING_DEMO"] = "1", ["STRIPE_API_BASE"] = "http://127.0.0.1:12111", ["STRIPE_SECRET_KEY"] = "sk_test_billing_simulator",
        }), Is.EqualTo(HttpStatusCode.OK));
    }

    [TestCase(null, "sk_test_x")]                       // real Stripe: no API base of its own
    [TestCase("https://api.stripe.com", "sk_test_x")]
    [TestCase("http://127.0.0.1:12111", "sk_live_x")]   // a live key
    [TestCase("http://127.0.0.1:12111", "rk_live_x")]
    public async Task Is_not_served_with_real_Stripe(string? apiBase, string key)
    {
        Assert.That(await SignInAsync(new Dictionary<string, string?>
        {
            ["BILLING_DEMO"] = "1", ["STRIPE_API_BASE"] = apiBase, ["STRIPE_SECRET_KEY"] = key,
        }), Is.EqualTo(HttpStatusCode.NotFound));
    }
}
