using System.Text.Json.Nodes;

namespace Billing.StripeSimulator.Infrastructure;

/// <summary>An error answered in Stripe's shape: <c>{"error":{"type","code","param","message"}}</c>.</summary>
public sealed class StripeError(int status, string type, string? code, string? param, string message, string? declineCode = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Code { get; } = code;
    public string? Param { get; } = param;
    public string? DeclineCode { get; } = declineCode;
    public JsonObject? Extra { get; init; }

    public static StripeError NotFound(string what, string id, string param = "id") =>
        new(404, "invalid_request_error", "resource_missing", param, $"No such {what}: '{id}'");

    public static StripeError Missing(string param) =>
        new(400, "invalid_request_error", "parameter_missing", param, $"Missing required param: {param}.");

    public static StripeError Invalid(string? param, string message, string? code = "parameter_invalid") =>
        new(400, "invalid_request_error", code, param, message);

    public static StripeError Card(string code, string message, string? declineCode) =>
        new(402, "card_error", code, null, message, declineCode);

    public JsonObject ToJson()
    {
        var error = new JsonObject
        {
            ["type"] = Type,
            ["code"] = Code,
            ["param"] = Param,
            ["message"] = Message,
            ["doc_url"] = Code is null ? null : $"https://stripe.com/docs/error-codes/{Code.Replace('_', '-')}",
        };
        if (DeclineCode is not null)
        {
            error["decline_code"] = DeclineCode;
        }
        if (Extra is not null)
        {
            foreach (var (key, value) in Extra)
            {
                error[key] = value?.DeepClone();
            }
        }
        return new JsonObject { ["error"] = error };
    }
}
