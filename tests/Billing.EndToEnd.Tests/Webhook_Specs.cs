using System.Text;

namespace Billing.EndToEnd.Tests;

/// <summary>
/// <c>POST /webhooks/stripe</c> through the gateway (ARCHITECTURE.md rule 1): verified on the raw body, stored once,
/// acknowledged only after the commit; anything else is a 4xx and stores nothing.
/// </summary>
[TestFixture]
public class The_Stripe_webhook
{
    private static readonly HttpClient Http = new() { BaseAddress = TestEnvironment.GatewayUrl };

    private static string Event(string type, string? id = null) =>
        $$$"""{"id":"{{{id ?? "evt_e2e_" + Guid.NewGuid().ToString("N")}}}","object":"event","api_version":"2026-10-28.endive","created":{{{DateTimeOffset.UtcNow.ToUnixTimeSeconds()}}},"data":{"object":{"id":"cus_e2e","object":"customer"}},"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"{{{type}}}"}""";

    private static async Task<(HttpStatusCode Status, string Body)> PostAsync(string body, string? signature)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/stripe") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (signature is not null)
        {
            request.Headers.TryAddWithoutValidation("Stripe-Signature", signature);
        }
        using var response = await Http.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static async Task<JsonElement?> StoredAsync(string eventId)
    {
        using var admin = Api.Gateway(Tokens.Admin());
        var (_, body, _) = await admin.GetAsync("/api/admin/webhook-events?limit=500");
        return body.GetProperty("items").EnumerateArray().Cast<JsonElement?>().FirstOrDefault(e => e!.Value.GetProperty("id").GetString() == eventId);
    }

    [Test]
    public async Task A_valid_event_of_a_type_Billing_ignores_is_stored_as_ignored_and_acknowledged()
    {
        var id = "evt_e2e_" + Guid.NewGuid().ToString("N");
        var body = Event("customer.created", id);
        var (status, answer) = await PostAsync(body, StripeSignatures.Header(body));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        Assert.That((await StoredAsync(id))?.GetProperty("status").GetString(), Is.EqualTo("ignored"));
    }

    [Test]
    public async Task A_duplicate_is_acknowledged_and_changes_nothing()
    {
        var id = "evt_e2e_" + Guid.NewGuid().ToString("N");
        var body = Event("customer.created", id);
        var first = await PostAsync(body, StripeSignatures.Header(body));
        var again = await PostAsync(body, StripeSignatures.Header(body));
        Assert.That((first.Status, again.Status), Is.EqualTo((HttpStatusCode.OK, HttpStatusCode.OK)));
        Assert.That(JsonDocument.Parse(first.Body).RootElement.GetProperty("duplicate").GetBoolean(), Is.False);
        Assert.That(JsonDocument.Parse(again.Body).RootElement.GetProperty("duplicate").GetBoolean(), Is.True);
    }

    [Test]
    public async Task A_bad_signature_is_refused_and_nothing_is_stored()
    {
        var id = "evt_e2e_" + Guid.NewGuid().ToString("N");
        var body = Event("invoice.paid", id);
        var (status, answer) = await PostAsync(body, StripeSignatures.Header(body, secret: "whsec_someone_else"));
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(JsonDocument.Parse(answer).RootElement.GetProperty("code").GetString(), Is.EqualTo("invalid_signature"));
        Assert.That(await StoredAsync(id), Is.Null);
    }

    [Test]
    public async Task A_body_changed_after_signing_is_refused()
    {
        var id = "evt_e2e_" + Guid.NewGuid().ToString("N");
        var body = Event("customer.created", id);
        var (status, _) = await PostAsync(body.Replace("cus_e2e", "cus_evil"), StripeSignatures.Header(body));
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(await StoredAsync(id), Is.Null);
    }

    [Test]
    public async Task A_missing_signature_header_is_refused()
    {
        var id = "evt_e2e_" + Guid.NewGuid().ToString("N");
        var (status, answer) = await PostAsync(Event("customer.created", id), signature: null);
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(JsonDocument.Parse(answer).RootElement.GetProperty("code").GetString(), Is.EqualTo("missing_signature"));
        Assert.That(await StoredAsync(id), Is.Null);
    }

    [Test]
    public async Task A_stale_timestamp_is_refused_even_with_a_correct_signature()
    {
        var id = "evt_e2e_" + Guid.NewGuid().ToString("N");
        var body = Event("customer.created", id);
        var (status, _) = await PostAsync(body, StripeSignatures.Header(body, at: DateTimeOffset.UtcNow.AddMinutes(-10)));
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(await StoredAsync(id), Is.Null);
    }

    [Test]
    public async Task A_signed_body_that_is_not_a_Stripe_event_is_refused()
    {
        const string body = "this is not json";
        var (status, answer) = await PostAsync(body, StripeSignatures.Header(body));
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(JsonDocument.Parse(answer).RootElement.GetProperty("code").GetString(), Is.EqualTo("invalid_event"));
        var (status2, _) = await PostAsync("{\"id\":\"nope\"}", StripeSignatures.Header("{\"id\":\"nope\"}"));
        Assert.That(status2, Is.EqualTo(HttpStatusCode.BadRequest));
    }

    [Test]
    public async Task A_body_over_one_MiB_is_refused_with_413()
    {
        var body = Event("customer.created").Replace("\"livemode\"", "\"padding\":\"" + new string('x', 1024 * 1024) + "\",\"livemode\"");
        var (status, _) = await PostAsync(body, StripeSignatures.Header(body));
        Assert.That(status, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge));
    }
}
