using System.Diagnostics;
using System.Text.Json;
using Billing.ServiceDefaults;
using Billing.Usage.Api.Spending;

namespace Billing.Usage.Api.Endpoints;

/// <summary>
/// <c>POST /internal/usage/consume-batch</c> (<see cref="ConsumeBatch"/>): the consumes the gateway gathered, each run
/// through this service's own middleware — token and scope check, correlation id, error handling — and the
/// <c>POST /api/usage/consume</c> endpoint, exactly as if it had come alone, and answered with its own status, headers
/// and body. The batch itself needs no token: each consume carries and is checked by its own, so the batch can do
/// nothing that its consumes could not do one by one. Not routed by the gateway.
/// </summary>
public static class ConsumeBatchEndpoints
{
    /// <summary>The <see cref="HttpContext.Items"/> key of the <see cref="SpendWriter.ComingSpend"/> a batch took for a consume.</summary>
    public static readonly object ComingKey = new();

    /// <summary>
    /// Remembers the request pipeline after this point, so a batch can run each of its consumes through it. Call it
    /// first, before <c>UseServiceDefaults</c>: everything after it (and only that) is what a consume goes through.
    /// </summary>
    public static WebApplication UseConsumeBatches(this WebApplication app)
    {
        var runner = app.Services.GetRequiredService<ConsumeBatchRunner>();
        app.Use(next =>
        {
            runner.Pipeline = next;
            return next;
        });
        return app;
    }

    public static IEndpointRouteBuilder MapConsumeBatchApi(this IEndpointRouteBuilder app)
    {
        app.MapPost(ConsumeBatch.Path, async (HttpContext http, ConsumeBatchRunner runner, SpendWriter writer) =>
            {
                List<BatchedRequest>? items;
                try
                {
                    items = await JsonSerializer.DeserializeAsync<List<BatchedRequest>>(http.Request.Body, ConsumeBatch.Json, http.RequestAborted);
                }
                catch (JsonException)
                {
                    items = null;
                }
                if (items is null || items.Count is 0 or > ConsumeBatch.MaxItems || items.Any(i => i?.Headers is null || i.Body is null))
                {
                    return Problems.Validation(new Dictionary<string, string[]>
                    {
                        ["body"] = [$"A JSON array of 1 to {ConsumeBatch.MaxItems} items {{\"headers\":{{…}},\"body\":\"<base64>\"}}."],
                    });
                }
                // Announced before any runs: the spend writer gathers them into one transaction instead of committing the first alone.
                var comings = items.Select(_ => writer.Expect()).ToArray();
                try
                {
                    var answers = await Task.WhenAll(items.Select((item, i) => runner.RunAsync(http, item, comings[i])));
                    return Results.Json(answers, ConsumeBatch.Json);
                }
                finally
                {
                    foreach (var coming in comings)
                    {
                        coming.Dispose();
                    }
                }
            })
            .AllowAnonymous()
            .ExcludeFromDescription();
        return app;
    }
}

/// <summary>Runs one consume of a batch through the captured pipeline, on a request of its own.</summary>
public sealed class ConsumeBatchRunner(IServiceScopeFactory scopes, EndpointDataSource endpoints, ILogger<ConsumeBatchRunner> logger)
{
    private static readonly ActivitySource Source = new(BillingTelemetry.Prefix + ".Usage.ConsumeBatch");
    private Endpoint? _consume;

    internal RequestDelegate? Pipeline { get; set; }

    public async Task<BatchedResponse> RunAsync(HttpContext batch, BatchedRequest item, SpendWriter.ComingSpend coming)
    {
        var pipeline = Pipeline ?? throw new InvalidOperationException("UseConsumeBatches() was not called.");
        _consume ??= endpoints.Endpoints.Single(e => e.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName == "ConsumeQuota");

        await using var scope = scopes.CreateAsyncScope();
        var context = new DefaultHttpContext { RequestServices = scope.ServiceProvider, RequestAborted = batch.RequestAborted };
        var request = context.Request;
        request.Method = HttpMethods.Post;
        request.Scheme = batch.Request.Scheme;
        request.Host = batch.Request.Host;
        request.Protocol = batch.Request.Protocol;
        request.Path = ConsumeBatch.ItemPath;
        foreach (var name in ConsumeBatch.RequestHeaders)
        {
            if (item.Headers.TryGetValue(name, out var value))
            {
                request.Headers[name] = value;
            }
        }
        request.Body = new MemoryStream(item.Body, writable: false);
        request.ContentLength = item.Body.Length;
        context.Connection.RemoteIpAddress = batch.Connection.RemoteIpAddress;
        context.Connection.RemotePort = batch.Connection.RemotePort;
        using var answer = new MemoryStream();
        context.Response.Body = answer;
        context.Items[ConsumeBatchEndpoints.ComingKey] = coming;
        context.SetEndpoint(_consume);

        // The consume's own span, a child of the gateway's span of the same consume (its traceparent), as a proxied request's would be.
        using var activity = StartActivity(item.Headers);
        try
        {
            await pipeline(context);
        }
        catch (Exception ex)
        {
            // The pipeline's exception handler answers what it can; this is what escaped it (the batch being aborted).
            logger.LogWarning(ex, "A batched consume failed outside the request pipeline");
            return new BatchedResponse(StatusCodes.Status500InternalServerError, [], []);
        }
        finally
        {
            coming.Dispose();
        }
        activity?.SetTag("http.response.status_code", context.Response.StatusCode);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var name in ConsumeBatch.ResponseHeaders)
        {
            if (context.Response.Headers.TryGetValue(name, out var value))
            {
                headers[name] = value.ToString();
            }
        }
        return new BatchedResponse(context.Response.StatusCode, headers, answer.ToArray());
    }

    private static Activity? StartActivity(Dictionary<string, string> headers)
    {
        const string name = "POST " + ConsumeBatch.ItemPath;
        var traceparent = headers.GetValueOrDefault("traceparent");
        if (traceparent is null || !ActivityContext.TryParse(traceparent, headers.GetValueOrDefault("tracestate"), isRemote: true, out var parent))
        {
            return Source.StartActivity(name, ActivityKind.Server);
        }
        // Recorded when tracing is on; otherwise a bare activity, so logs and problems still carry the gateway's trace id.
        return Source.StartActivity(name, ActivityKind.Server, parent) ?? new Activity(name).SetParentId(traceparent).Start();
    }
}
