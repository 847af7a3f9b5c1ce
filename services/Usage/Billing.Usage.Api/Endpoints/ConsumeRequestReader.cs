using System.Text.Json;
using Billing.Usage.Core.Consuming;

namespace Billing.Usage.Api.Endpoints;

/// <summary>
/// Reads the consume body by hand, so that a missing body, malformed JSON or a field of the wrong type is a 400 that
/// names the field rather than a binding failure.
/// </summary>
internal static class ConsumeRequestReader
{
    public static async Task<(ConsumeRequest? Request, Dictionary<string, string[]> Errors)> ReadAsync(HttpRequest http, CancellationToken cancellationToken)
    {
        var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(http.Body, default, cancellationToken);
        }
        catch (JsonException)
        {
            errors["body"] = ["The body must be a JSON object: {\"userId\",\"meter\",\"quantity\",\"idempotencyKey\",\"groups\"?}."];
            return (null, errors);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                errors["body"] = ["The body must be a JSON object."];
                return (null, errors);
            }

            var userId = Text(root, "userId", errors);
            var meter = Text(root, "meter", errors);
            var key = Text(root, "idempotencyKey", errors);
            long quantity = 0;
            if (!Find(root, "quantity", out var q) || q.ValueKind == JsonValueKind.Null)
            {
                errors["quantity"] = ["Required."];
            }
            else if (q.ValueKind != JsonValueKind.Number || !q.TryGetInt64(out quantity) || quantity is < 1 or > ConsumeRequest.MaxQuantity)
            {
                errors["quantity"] = [$"An integer from 1 to {ConsumeRequest.MaxQuantity}."];
            }

            var groups = new List<string>();
            if (Find(root, "groups", out var g) && g.ValueKind != JsonValueKind.Null)
            {
                if (g.ValueKind != JsonValueKind.Array || g.GetArrayLength() > ConsumeRequest.MaxGroups
                    || g.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String || x.GetString()!.Length > ConsumeRequest.MaxTextLength))
                {
                    errors["groups"] = [$"An array of at most {ConsumeRequest.MaxGroups} strings of at most {ConsumeRequest.MaxTextLength} characters."];
                }
                else
                {
                    groups.AddRange(g.EnumerateArray().Select(x => x.GetString()!).Where(x => x.Length > 0));
                }
            }

            return errors.Count > 0 ? (null, errors) : (new ConsumeRequest(userId!, meter!, quantity, key!, groups), errors);
        }
    }

    private static string? Text(JsonElement root, string name, Dictionary<string, string[]> errors)
    {
        if (!Find(root, name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            errors[name] = ["Required."];
            return null;
        }
        if (value.ValueKind != JsonValueKind.String || value.GetString() is not { } text || string.IsNullOrWhiteSpace(text))
        {
            errors[name] = ["A non-empty string."];
            return null;
        }
        if (text.Length > ConsumeRequest.MaxTextLength)
        {
            errors[name] = [$"At most {ConsumeRequest.MaxTextLength} characters."];
            return null;
        }
        return text;
    }

    // camelCase is the contract; other casings are accepted the way System.Text.Json's web defaults would.
    private static bool Find(JsonElement root, string name, out JsonElement value)
    {
        if (root.TryGetProperty(name, out value))
        {
            return true;
        }
        foreach (var property in root.EnumerateObject())
        {
            if (string.Equals(property.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                value = property.Value;
                return true;
            }
        }
        return false;
    }
}
