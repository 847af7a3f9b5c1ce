using System.Net.Http.Headers;

namespace Billing.EndToEnd.Tests;

/// <summary>Reads Stripe's own objects (here: the simulator's /v1 API) to compare them with what Billing shows.</summary>
public static class StripeView
{
    private static readonly HttpClient Http = new() { BaseAddress = TestEnvironment.SimulatorUrl, Timeout = TimeSpan.FromSeconds(30) };

    static StripeView() => Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "sk_test_e2e");

    public static async Task<string> CustomerOfAsync(string userId)
    {
        var found = await Http.GetFromJsonAsync<JsonElement>($"/v1/customers/search?query={Uri.EscapeDataString($"metadata['userId']:'{userId}'")}");
        return found.GetProperty("data")[0].GetProperty("id").GetString()!;
    }

    public static async Task<JsonElement> SubscriptionOfAsync(string userId)
    {
        var customer = await CustomerOfAsync(userId);
        var list = await Http.GetFromJsonAsync<JsonElement>($"/v1/subscriptions?customer={customer}&status=all&limit=1");
        return list.GetProperty("data")[0];
    }

    /// <summary>Stripe's id of the active price with <paramref name="lookupKey"/>.</summary>
    public static async Task<string> PriceIdAsync(string lookupKey)
    {
        var found = await Http.GetFromJsonAsync<JsonElement>($"/v1/prices?active=true&lookup_keys[]={Uri.EscapeDataString(lookupKey)}");
        return found.GetProperty("data")[0].GetProperty("id").GetString()!;
    }

    /// <summary>The meter events Stripe received for a customer, newest first.</summary>
    public static async Task<IReadOnlyList<JsonElement>> MeterEventsAsync(string customer)
    {
        var events = await Http.GetFromJsonAsync<JsonElement>("/_sim/meter_events");
        return events.GetProperty("data").EnumerateArray().Where(e => e.GetProperty("customer").GetString() == customer).Select(e => e.Clone()).ToList();
    }

    /// <summary>The values of the meter events Stripe received for a customer.</summary>
    public static async Task<IReadOnlyList<long>> MeterEventValuesAsync(string customer) =>
        (await MeterEventsAsync(customer))
            .Select(e => e.GetProperty("value") is { ValueKind: JsonValueKind.String } text ? long.Parse(text.GetString()!, System.Globalization.CultureInfo.InvariantCulture)
                : e.GetProperty("value").GetInt64()).ToList();

    /// <summary>The customer's charges, newest first.</summary>
    public static async Task<IReadOnlyList<JsonElement>> ChargesOfAsync(string userId)
    {
        var customer = await CustomerOfAsync(userId);
        var list = await Http.GetFromJsonAsync<JsonElement>($"/v1/charges?customer={customer}&limit=100");
        return list.GetProperty("data").EnumerateArray().Select(c => c.Clone()).ToList();
    }

    /// <summary>The charge a refund was made on.</summary>
    public static async Task<string> ChargeOfRefundAsync(string refundId) =>
        (await Http.GetFromJsonAsync<JsonElement>($"/v1/refunds/{refundId}")).GetProperty("charge").GetString()!;

    /// <summary>The customer disputes a charge with their bank (the simulator's chargeback).</summary>
    public static async Task<JsonElement> DisputeAsync(string chargeId)
    {
        using var response = await Http.PostAsJsonAsync($"/_sim/charges/{chargeId}/dispute", new { reason = "fraudulent" });
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    /// <summary>Changes the card on file, e.g. to fix a failing one before the next retry.</summary>
    public static async Task SetCardAsync(string userId, string card)
    {
        var customer = await CustomerOfAsync(userId);
        using var response = await Http.PostAsJsonAsync($"/_sim/customers/{customer}/card", new { card });
        response.EnsureSuccessStatusCode();
    }

    /// <summary>ISSUE 4: what /api/subscriptions/me shows must be Stripe's own object.</summary>
    public static async Task AssertBillingMatchesStripeAsync(Api user, string userId)
    {
        var stripe = await SubscriptionOfAsync(userId);
        var mine = await Eventually.GetAsync(async () => (await user.GetAsync("/api/subscriptions/me")).Body,
            m => Matches(m, stripe), "Billing to show Stripe's subscription " + stripe.GetProperty("status").GetString());
        Assert.That(Matches(mine, stripe), Is.True);
    }

    private static bool Matches(JsonElement mine, JsonElement stripe)
    {
        var status = stripe.GetProperty("status").GetString();
        var expected = status switch
        {
            "trialing" or "active" => status,
            "past_due" or "unpaid" or "paused" => "past_due",
            "canceled" => "expired|canceled",
            _ => "none",
        };
        if (!expected.Split('|').Contains(mine.GetProperty("status").GetString()))
        {
            return false;
        }
        if (status is "canceled" or "incomplete" or "incomplete_expired")
        {
            return true;
        }
        var item = stripe.GetProperty("items").GetProperty("data").EnumerateArray()
            .First(i => i.GetProperty("price").GetProperty("recurring").GetProperty("usage_type").GetString() != "metered");
        var periodEnd = DateTimeOffset.FromUnixTimeSeconds(item.GetProperty("current_period_end").GetInt64());
        return mine.GetProperty("currentPeriodEnd").GetDateTimeOffset() == periodEnd
            && mine.GetProperty("cancelAtPeriodEnd").GetBoolean() == stripe.GetProperty("cancel_at_period_end").GetBoolean();
    }
}
