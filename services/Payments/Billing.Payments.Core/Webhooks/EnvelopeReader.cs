using System.Text.Json;

namespace Billing.Payments.Core.Webhooks;

/// <summary>
/// Reads an event's envelope from its raw JSON, and the key its processing is serialised on: all events about one
/// subscription (its own, its invoices', its checkout's) share the subscription id, so they never race.
/// </summary>
public static class EnvelopeReader
{
    /// <summary>The envelope, or an error message when the body is not a Stripe event.</summary>
    public static (StripeEventEnvelope? Envelope, string? Error) Read(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            return (null, "the body is not JSON: " + ex.Message);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object
                || Str(root, "id") is not { } id || !id.StartsWith("evt_", StringComparison.Ordinal) || id.Length > 255
                || Str(root, "type") is not { Length: > 0 and <= 255 } type
                || !root.TryGetProperty("created", out var created) || created.ValueKind != JsonValueKind.Number
                || !root.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Object
                || !data.TryGetProperty("object", out var obj) || obj.ValueKind != JsonValueKind.Object)
            {
                return (null, "not a Stripe event: id (evt_…), type, created and data.object are required");
            }

            var objectType = Str(obj, "object");
            var objectId = Str(obj, "id");
            return (new StripeEventEnvelope(id, type, DateTimeOffset.FromUnixTimeSeconds(created.GetInt64()), Str(root, "api_version"),
                root.TryGetProperty("livemode", out var live) && live.ValueKind == JsonValueKind.True,
                objectType, objectId, OrderKey(objectType, obj) ?? objectId ?? id), null);
        }
    }

    private static string? OrderKey(string? objectType, JsonElement obj) => objectType switch
    {
        "subscription" => Str(obj, "id"),
        "invoice" => Path(obj, "parent", "subscription_details", "subscription") ?? Str(obj, "subscription") ?? Str(obj, "id"),
        "checkout.session" => Str(obj, "subscription") ?? Path(obj, "subscription", "id") ?? Str(obj, "id"),
        "charge" => Str(obj, "payment_intent") ?? Str(obj, "id"),
        "dispute" => Str(obj, "payment_intent") ?? Str(obj, "charge") ?? Str(obj, "id"), // in line with its charge's events
        "refund" => Str(obj, "payment_intent") ?? Str(obj, "charge") ?? Str(obj, "id"),
        "subscription_schedule" => Str(obj, "subscription") ?? Str(obj, "released_subscription") ?? Str(obj, "id"),
        _ => Str(obj, "id"),
    };

    private static string? Str(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static string? Path(JsonElement element, params string[] names)
    {
        foreach (var name in names[..^1])
        {
            if (!element.TryGetProperty(name, out element) || element.ValueKind != JsonValueKind.Object)
            {
                return null;
            }
        }
        return Str(element, names[^1]);
    }
}
