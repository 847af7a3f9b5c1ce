using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Billing.ServiceDefaults;

/// <summary>
/// The wire format between the gateway and Usage for <c>POST /api/usage/consume</c>: the gateway sends the consumes that
/// arrive together as one request to <see cref="Path"/>, and Usage runs each through its own middleware (token, scope,
/// correlation id, error handling) and consume endpoint exactly as if it had come alone, answering each with its own
/// status, headers and body. One HTTP round trip and one request's worth of framework work for many consumes.
/// </summary>
public static class ConsumeBatch
{
    /// <summary>Usage's internal endpoint (not routed by the gateway).</summary>
    public const string Path = "/internal/usage/consume-batch";

    /// <summary>The public path each item stands for.</summary>
    public const string ItemPath = "/api/usage/consume";

    /// <summary>The answer: one <see cref="BatchedAnswer"/> JSON object per line, each as soon as its consume is done.</summary>
    public const string AnswerContentType = "application/x-ndjson";

    /// <summary>At most this many consumes in one batch request.</summary>
    public const int MaxItems = 256;

    /// <summary>The request headers an item carries; every other header a client sent (identity headers too) is dropped.</summary>
    public static readonly string[] RequestHeaders = ["Authorization", CorrelationId.Header, "traceparent", "tracestate", "Content-Type", "Accept"];

    /// <summary>The response headers an item's answer carries back.</summary>
    public static readonly string[] ResponseHeaders = ["Content-Type", "Retry-After", "WWW-Authenticate"];

    /// <summary>The headers of <paramref name="names"/> that <paramref name="headers"/> has, as a batch carries them.</summary>
    public static Dictionary<string, string> Pick(IHeaderDictionary headers, string[] names)
    {
        var picked = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var name in names)
        {
            if (headers.TryGetValue(name, out var value))
            {
                picked[name] = value.ToString();
            }
        }
        return picked;
    }

    /// <summary>camelCase, bodies as base64.</summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
}

/// <summary>One consume of a batch: the headers of <see cref="ConsumeBatch.RequestHeaders"/> and the raw body.</summary>
public sealed record BatchedRequest(Dictionary<string, string> Headers, byte[] Body);

/// <summary>One consume's answer: what Usage would have answered it alone.</summary>
public sealed record BatchedResponse(int Status, Dictionary<string, string> Headers, byte[] Body);

/// <summary>The answer to the consume at <paramref name="Index"/> of the batch.</summary>
public sealed record BatchedAnswer(int Index, BatchedResponse Response);
