using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Billing.ServiceDefaults;

/// <summary>
/// One id per request that a person can quote: taken from <c>X-Correlation-Id</c> when it is well-formed (so the
/// gateway's id follows the request into every service), otherwise made here. It is returned on the response,
/// put into the log scope of every line written for the request and tagged on the request's span.
/// </summary>
public static class CorrelationId
{
    /// <summary>The header that carries the id in both directions.</summary>
    public const string Header = "X-Correlation-Id";

    /// <summary>The name of the log-scope member and the span tag.</summary>
    public const string LogProperty = "CorrelationId";

    /// <summary>The span tag that carries the id.</summary>
    public const string SpanTag = "billing.correlation_id";

    /// <summary>The id of the current request (set by the middleware); null outside a request.</summary>
    public static string? Get(HttpContext context) => context.Items[LogProperty] as string;

    private static readonly AsyncLocal<string?> s_current = new();

    /// <summary>
    /// The id of the work in progress: the request's (HTTP), or the one a consumed message carried. The outbox stores it
    /// with every message, the relay sends it as the <see cref="Header"/> header, and consumers take it up again, so one
    /// id follows a story from the gateway through every service and message.
    /// </summary>
    public static string? Current
    {
        get => s_current.Value;
        set => s_current.Value = value;
    }

    /// <summary>
    /// True for 1–128 characters of letters, digits and <c>- _ . :</c>: enough for GUIDs, trace ids and vendor
    /// request ids, and nothing that could forge a log line or a header.
    /// </summary>
    public static bool IsWellFormed(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 128)
        {
            return false;
        }
        foreach (var c in value)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':'))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Adds the correlation-id middleware; call it early, before anything that logs.</summary>
    public static IApplicationBuilder UseCorrelationId(this IApplicationBuilder app) => app.UseMiddleware<CorrelationIdMiddleware>();

    /// <summary>
    /// Takes up the request's id (or makes one): on the request, the response, the span and <see cref="Current"/>.
    /// Returns the log scope that carries it, to dispose when the request ends.
    /// </summary>
    public static IDisposable? Begin(HttpContext context, ILogger logger)
    {
        var incoming = context.Request.Headers[Header];
        var id = Take(incoming.Count == 1 ? incoming[0] : null);
        Adopt(context, id);
        return BeginScope(id, logger);
    }

    /// <summary>The id a request carries when it is well-formed; otherwise a new one.</summary>
    public static string Take(string? incoming) => IsWellFormed(incoming) ? incoming! : Guid.NewGuid().ToString("N");

    /// <summary>Puts <paramref name="id"/> on the request (<see cref="Get"/>) and, when it starts, the response.</summary>
    public static void Adopt(HttpContext context, string id)
    {
        // Replace whatever the client sent, so a proxy behind us forwards exactly this one value.
        context.Request.Headers[Header] = id;
        context.Items[LogProperty] = id;
        // Set when the response starts (a proxied answer may carry the service's copy of the same id: keep one).
        context.Response.OnStarting(static state =>
        {
            var (ctx, value) = ((HttpContext, string))state;
            ctx.Response.Headers[Header] = value;
            return Task.CompletedTask;
        }, (context, id));
    }

    /// <summary>
    /// <paramref name="id"/> on the current span and <see cref="Current"/>; returns the log scope that carries it, to
    /// dispose when the work ends (<see cref="Begin"/> without a request: a consume of a gateway's batch).
    /// </summary>
    public static IDisposable? BeginScope(string id, ILogger logger)
    {
        Activity.Current?.SetTag(SpanTag, id);
        Current = id;
        return logger.BeginScope(new CorrelationScope(id));
    }
}

internal sealed class CorrelationIdMiddleware(RequestDelegate next, ILogger<CorrelationIdMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        using (CorrelationId.Begin(context, logger))
        {
            await next(context);
        }
    }
}

/// <summary>The log scope: structured (<c>CorrelationId</c>) for JSON and OTLP, readable for the console.</summary>
internal sealed class CorrelationScope(string id) : IReadOnlyList<KeyValuePair<string, object>>
{
    public KeyValuePair<string, object> this[int index] =>
        index == 0 ? new(CorrelationId.LogProperty, id) : throw new ArgumentOutOfRangeException(nameof(index));

    public int Count => 1;

    public IEnumerator<KeyValuePair<string, object>> GetEnumerator()
    {
        yield return this[0];
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => CorrelationId.LogProperty + ":" + id;
}
