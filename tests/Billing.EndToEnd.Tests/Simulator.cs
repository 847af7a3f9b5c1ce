namespace Billing.EndToEnd.Tests;

/// <summary>What a person does on the Stripe simulator's pages, and its clock.</summary>
public static class Simulator
{
    private static readonly HttpClient Http = new(new HttpClientHandler { AllowAutoRedirect = false })
    {
        BaseAddress = TestEnvironment.SimulatorUrl,
        Timeout = TimeSpan.FromSeconds(30),
    };

    /// <summary>Pays a checkout session on the hosted page with a test card; returns the HTTP status and redirect.</summary>
    public static async Task<(HttpStatusCode Status, Uri? Location)> PayAsync(string sessionId, string card = "4242424242424242")
    {
        using var response = await Http.PostAsync($"/checkout/{sessionId}/pay",
            new FormUrlEncodedContent(new Dictionary<string, string> { ["card"] = card }));
        return (response.StatusCode, response.Headers.Location);
    }

    /// <summary>Switches the subscription to another price on the customer portal's page (as its "Switch plan" button does).</summary>
    public static async Task PortalSwitchAsync(string portalUrl, string subscriptionId, string priceId)
    {
        using var response = await Http.PostAsync(new Uri(portalUrl).AbsolutePath.TrimEnd('/') + "/switch",
            new FormUrlEncodedContent(new Dictionary<string, string> { ["subscription"] = subscriptionId, ["price"] = priceId }));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.SeeOther), await response.Content.ReadAsStringAsync());
    }

    /// <summary>Moves simulated time forward; renewals, failures and period ends happen with their events.</summary>
    public static async Task AdvanceAsync(TimeSpan by)
    {
        using var response = await Http.PostAsJsonAsync("/_sim/clock/advance", new { seconds = (long)by.TotalSeconds });
        response.EnsureSuccessStatusCode();
        // The services follow the simulated clock by polling it every 200 ms: let them catch up.
        await Task.Delay(600);
    }

    /// <summary>Switches webhook delivery off (events are still created and listed) or on again.</summary>
    public static async Task DeliverWebhooksAsync(bool deliver)
    {
        using var response = await Http.PostAsJsonAsync("/_sim/config", new { deliverWebhooks = deliver });
        response.EnsureSuccessStatusCode();
    }

    /// <summary>Every event the simulator created (newest first), as Stripe would have sent it.</summary>
    public static async Task<IReadOnlyList<JsonElement>> EventsAsync()
    {
        var answer = await Http.GetFromJsonAsync<JsonElement>("/_sim/events");
        return answer.GetProperty("data").EnumerateArray().Select(e => e.GetProperty("event").Clone()).ToList();
    }

    /// <summary>The card's bank returns a refund (a closed card): it fails, and Stripe sends <c>charge.refund.updated</c>.</summary>
    public static async Task FailRefundAsync(string refundId)
    {
        using var response = await Http.PostAsJsonAsync($"/_sim/refunds/{refundId}/fail", new { failure_reason = "expired_or_canceled_card" });
        response.EnsureSuccessStatusCode();
    }

    /// <summary>The bank decides a chargeback (<c>won</c> or <c>lost</c>): Stripe sends <c>charge.dispute.closed</c>.</summary>
    public static async Task CloseDisputeAsync(string disputeId, string status)
    {
        using var response = await Http.PostAsJsonAsync($"/_sim/disputes/{disputeId}/close", new { status });
        response.EnsureSuccessStatusCode();
    }

    /// <summary>Stripe rejects a meter event it had accepted (its asynchronous validation): it no longer counts anywhere.</summary>
    public static async Task RejectMeterEventAsync(string identifier)
    {
        using var response = await Http.PostAsJsonAsync($"/_sim/meter_events/{identifier}/reject", new { code = "meter_event_customer_not_found" });
        response.EnsureSuccessStatusCode();
    }

    public static async Task<DateTimeOffset> NowAsync()
    {
        var clock = await Http.GetFromJsonAsync<JsonElement>("/_sim/clock");
        return DateTimeOffset.FromUnixTimeSeconds(clock.GetProperty("now").GetInt64());
    }
}

/// <summary>Waiting for what happens asynchronously (webhooks, RabbitMQ) without fixed sleeps.</summary>
public static class Eventually
{
    public static async Task<T> GetAsync<T>(Func<Task<T>> read, Func<T, bool> done, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        T value = await read();
        while (!done(value))
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting for {what}; last value: {(value is JsonElement j ? j.ToString() : value?.ToString())}");
            }
            await Task.Delay(200);
            value = await read();
        }
        return value;
    }
}
