using System.Net.Http.Headers;

namespace Billing.Client.Tests;

/// <summary>What the tests need from the running stack: users on a plan, and what Billing says about them.</summary>
public static class Stack
{
    private static readonly HttpClient Sim = new(new HttpClientHandler { AllowAutoRedirect = false })
    {
        BaseAddress = TestEnvironment.SimulatorUrl,
        Timeout = TimeSpan.FromSeconds(30),
    };

    public static string NewUser() => "bc-" + Guid.NewGuid().ToString("N")[..10];

    /// <summary>A client on the gateway with a <c>billing.usage</c> service token, as an AI backend holds it.</summary>
    public static BillingClient Client(Action<BillingClientOptions>? configure = null, Uri? baseAddress = null)
    {
        var options = new BillingClientOptions
        {
            BaseAddress = baseAddress ?? TestEnvironment.GatewayUrl,
            TokenProvider = _ => ValueTask.FromResult<string?>(Tokens.Service()),
            RetryDelay = TimeSpan.FromMilliseconds(50),
        };
        configure?.Invoke(options);
        return new BillingClient(new HttpClient(), options);
    }

    public static HttpClient User(string userId)
    {
        var http = new HttpClient { BaseAddress = TestEnvironment.GatewayUrl, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Tokens.User(userId, email: userId + "@example.com"));
        return http;
    }

    /// <summary>Subscribes the user through Checkout and the simulator's hosted page, then waits until Usage grants the plan.</summary>
    public static async Task SubscribeAsync(string userId, string planId, string interval = "month", int intervalCount = 1, string card = "4242424242424242")
    {
        using var user = User(userId);
        using var checkout = await user.PostAsJsonAsync("/api/subscriptions/checkout", new { planId, interval, intervalCount });
        Assert.That(checkout.StatusCode, Is.EqualTo(HttpStatusCode.OK), await checkout.Content.ReadAsStringAsync());
        var session = (await checkout.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("checkoutSessionId").GetString()!;
        using var paid = await Sim.PostAsync($"/checkout/{session}/pay", new FormUrlEncodedContent(new Dictionary<string, string> { ["card"] = card }));
        Assert.That(paid.StatusCode, Is.EqualTo(HttpStatusCode.SeeOther), "the simulator's Pay button redirects to the success page");
        await Eventually(async () => (await EntitlementsPlanAsync(userId)) == planId, $"{userId} on {planId}");
    }

    public static async Task<string?> EntitlementsPlanAsync(string userId)
    {
        using var user = User(userId);
        var answer = await user.GetFromJsonAsync<JsonElement>("/api/entitlements/me");
        return answer.GetProperty("planId").GetString();
    }

    /// <summary>Used of the meter in the current window, as the user's own <c>GET /api/usage/me</c> shows it.</summary>
    public static async Task<long> UsedAsync(string userId, string meter)
    {
        using var user = User(userId);
        var answer = await user.GetFromJsonAsync<JsonElement>("/api/usage/me");
        return answer.GetProperty("meters").EnumerateArray().Single(m => m.GetProperty("meter").GetString() == meter).GetProperty("used").GetInt64();
    }

    public static async Task AdvanceClockAsync(TimeSpan by)
    {
        using var response = await Sim.PostAsJsonAsync("/_sim/clock/advance", new { seconds = (long)by.TotalSeconds });
        response.EnsureSuccessStatusCode();
        await Task.Delay(600); // the services poll the simulated clock every 200 ms
    }

    public static async Task Eventually(Func<Task<bool>> done, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (!await done())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting for {what}");
            }
            await Task.Delay(200);
        }
    }
}
