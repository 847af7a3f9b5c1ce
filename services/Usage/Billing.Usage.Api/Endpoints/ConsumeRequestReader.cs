using System.Text.Json;
using Billing.Usage.Core.Consuming;
using Billing.Usage.Core.Reservations;

namespace Billing.Usage.Api.Endpoints;

/// <summary>
/// Reads the consume body by hand, so that a missing body, malformed JSON or a field of the wrong type is a 400 that
/// names the field rather than a binding failure.
/// </summary>
internal static class ConsumeRequestReader
{
    /// <summary>The key space of the consumptions a reservation's commit records (<c>reservation:{id}</c>).</summary>
    public const string ReservedKeyPrefix = "reservation:";

    public static async Task<(ConsumeRequest? Request, Dictionary<string, string[]> Errors)> ReadAsync(HttpRequest http, CancellationToken cancellationToken)
    {
        var (request, _, errors) = await ReadAsync(http, withTtl: false, cancellationToken);
        return Consume(request, errors);
    }

    /// <summary>A consume's body already in memory (a consume of a gateway's batch), read as <see cref="ReadAsync(HttpRequest, CancellationToken)"/> reads it.</summary>
    public static (ConsumeRequest? Request, Dictionary<string, string[]> Errors) Read(ReadOnlyMemory<byte> body)
    {
        JsonDocument document;
        try
        {
            // Without a byte order mark, which the stream reader skips too.
            document = JsonDocument.Parse(body.Span.StartsWith(Utf8Bom) ? body[Utf8Bom.Length..] : body);
        }
        catch (JsonException)
        {
            var (_, _, errors) = NotJson();
            return (null, errors);
        }
        var (request, _, found) = Read(document, withTtl: false);
        return Consume(request, found);
    }

    private static ReadOnlySpan<byte> Utf8Bom => [0xEF, 0xBB, 0xBF];

    private static (ConsumeRequest? Request, Dictionary<string, string[]> Errors) Consume(ConsumeRequest? request, Dictionary<string, string[]> errors)
    {
        if (request?.IdempotencyKey.StartsWith(ReservedKeyPrefix, StringComparison.Ordinal) == true)
        {
            // A reservation's commit records its usage under this key: a consume must not take it (or be answered with it).
            errors["idempotencyKey"] = [$"Keys beginning with '{ReservedKeyPrefix}' are Billing's own (a reservation's commit); use another."];
            request = null;
        }
        return (request, errors);
    }

    /// <summary>A reservation's body: a consume's fields and an optional <c>ttlSeconds</c> (1 to 3600).</summary>
    public static Task<(ConsumeRequest? Request, int? TtlSeconds, Dictionary<string, string[]> Errors)> ReadReservationAsync(HttpRequest http,
        CancellationToken cancellationToken) => ReadAsync(http, withTtl: true, cancellationToken);

    /// <summary>A commit's body: <c>{"quantity"}</c>, 0 up to the reserved quantity.</summary>
    public static async Task<(long? Quantity, Dictionary<string, string[]> Errors)> ReadCommitAsync(HttpRequest http, CancellationToken cancellationToken)
    {
        var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
        try
        {
            using var document = await JsonDocument.ParseAsync(http.Body, default, cancellationToken);
            if (document.RootElement.ValueKind == JsonValueKind.Object && Find(document.RootElement, "quantity", out var q)
                && q.ValueKind == JsonValueKind.Number && q.TryGetInt64(out var quantity) && quantity is >= 0 and <= ConsumeRequest.MaxQuantity)
            {
                return (quantity, errors);
            }
        }
        catch (JsonException)
        {
        }
        errors["quantity"] = [$"The body must be {{\"quantity\": n}} with an integer from 0 to the reserved quantity."];
        return (null, errors);
    }

    private static async Task<(ConsumeRequest? Request, int? TtlSeconds, Dictionary<string, string[]> Errors)> ReadAsync(HttpRequest http,
        bool withTtl, CancellationToken cancellationToken)
    {
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(http.Body, default, cancellationToken);
        }
        catch (JsonException)
        {
            return NotJson();
        }
        return Read(document, withTtl);
    }

    private static (ConsumeRequest? Request, int? TtlSeconds, Dictionary<string, string[]> Errors) NotJson() =>
        (null, null, new Dictionary<string, string[]>(StringComparer.Ordinal)
        {
            ["body"] = ["The body must be a JSON object: {\"userId\",\"meter\",\"quantity\",\"idempotencyKey\",\"groups\"?}."],
        });

    /// <summary>Reads and disposes <paramref name="document"/>.</summary>
    private static (ConsumeRequest? Request, int? TtlSeconds, Dictionary<string, string[]> Errors) Read(JsonDocument document, bool withTtl)
    {
        var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                errors["body"] = ["The body must be a JSON object."];
                return (null, null, errors);
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

            List<string>? groups = null; // not passed on: the remembered groups count
            if (Find(root, "groups", out var g) && g.ValueKind != JsonValueKind.Null)
            {
                groups = [];
                if (g.ValueKind != JsonValueKind.Array || g.GetArrayLength() > ConsumeRequest.MaxGroups
                    || g.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String || x.GetString()!.Length > ConsumeRequest.MaxTextLength
                        || HasControlCharacters(x.GetString()!)))
                {
                    errors["groups"] = [$"An array of at most {ConsumeRequest.MaxGroups} strings of at most {ConsumeRequest.MaxTextLength} characters, without control characters."];
                }
                else
                {
                    groups.AddRange(g.EnumerateArray().Select(x => x.GetString()!).Where(x => x.Length > 0));
                }
            }

            int? ttl = null;
            if (withTtl && Find(root, "ttlSeconds", out var t) && t.ValueKind != JsonValueKind.Null)
            {
                if (t.ValueKind == JsonValueKind.Number && t.TryGetInt32(out var seconds) && ReservationRules.IsValidTtl(seconds))
                {
                    ttl = seconds;
                }
                else
                {
                    errors["ttlSeconds"] = [$"An integer from 1 to {ReservationRules.MaxTtlSeconds}."];
                }
            }

            return errors.Count > 0 ? (null, null, errors) : (new ConsumeRequest(userId!, meter!, quantity, key!, groups), ttl, errors);
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
        if (HasControlCharacters(text))
        {
            errors[name] = ["No control characters (such as NUL or a line break)."];
            return null;
        }
        return text;
    }

    /// <summary>Ids never contain control characters; PostgreSQL cannot even store a NUL in text.</summary>
    private static bool HasControlCharacters(string text) => text.AsSpan().IndexOfAnyInRange('\u0000', '\u001f') >= 0 || text.Contains('\u007f');

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
