using System.Diagnostics;
using System.Security.Claims;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Billing.ServiceDefaults;
using Billing.Usage.Api.Consuming;
using Billing.Usage.Api.Spending;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Billing.Usage.Api.Endpoints;

/// <summary>
/// <c>POST /internal/usage/consume-batch</c> (<see cref="ConsumeBatch"/>): the consumes the gateway gathered, each
/// checked — token, scope — and run through the <c>POST /api/usage/consume</c> endpoint with its own correlation id and
/// trace, as if it had come alone, and answered with its own status, headers and body (<see cref="ConsumeBatchRunner"/>). The batch itself needs no token: each consume carries and is checked by its own, so the batch can do
/// nothing that its consumes could not do one by one. Not routed by the gateway.
/// </summary>
public static class ConsumeBatchEndpoints
{
    /// <summary>The <see cref="HttpContext.Items"/> key of the <see cref="SpendWriter.ComingSpend"/> a batch took for a consume.</summary>
    public static readonly object ComingKey = new();

    private static readonly byte[] Newline = "\n"u8.ToArray();

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
        // Routing after the capture (not before it, where WebApplication would add it): a consume that is not checked on
        // the fast path is routed like one sent alone (405, 415 for a body that is not JSON).
        app.UseRouting();
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
                    await Problems.Validation(new Dictionary<string, string[]>
                    {
                        ["body"] = [$"A JSON array of 1 to {ConsumeBatch.MaxItems} items {{\"headers\":{{…}},\"body\":\"<base64>\"}}."],
                    }).ExecuteAsync(http);
                    return;
                }

                // Each answer is written as soon as its consume is done (one JSON line, flushed with whatever else is
                // ready), so one slow consume (a token-paid one waiting for Wallet) holds up no other.
                http.Response.ContentType = ConsumeBatch.AnswerContentType;
                await http.Response.StartAsync(http.RequestAborted);
                var answers = Channel.CreateUnbounded<BatchedAnswer>(new UnboundedChannelOptions { SingleReader = true });
                var left = items.Count;
                // Announced before any runs: the spend writer gathers them into one transaction instead of committing the first alone.
                var comings = items.Select(_ => writer.Expect()).ToArray();
                // What the consumes need of the batch's request, read here: an HttpContext is not safe to read from
                // other threads while this one writes the answers (a consume once read a null feature that way).
                var origin = BatchOrigin.Of(http);
                // Each on a flow of its own: not inside this request's log scope, span and correlation id, but its own.
                using (ExecutionContext.SuppressFlow())
                {
                    for (var i = 0; i < items.Count; i++)
                    {
                        var (index, item, coming) = (i, items[i], comings[i]);
                        _ = Task.Run(async () =>
                        {
                            BatchedResponse response;
                            try
                            {
                                response = await runner.RunAsync(origin, item, coming);
                            }
                            finally
                            {
                                coming.Dispose(); // also when it never reached the writer, or every later batch would wait for it
                            }
                            answers.Writer.TryWrite(new BatchedAnswer(index, response));
                            if (Interlocked.Decrement(ref left) == 0)
                            {
                                answers.Writer.TryComplete();
                            }
                        });
                    }
                }
                // Until every consume is done, even when the gateway has gone: they use this request's context.
                var output = http.Response.Body;
                var gone = false;
                while (await answers.Reader.WaitToReadAsync())
                {
                    try
                    {
                        while (answers.Reader.TryRead(out var answer))
                        {
                            if (!gone)
                            {
                                await output.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(answer, ConsumeBatch.Json));
                                await output.WriteAsync(Newline);
                            }
                        }
                        if (!gone)
                        {
                            await output.FlushAsync();
                        }
                    }
                    catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException)
                    {
                        gone = true;
                    }
                }
            })
            .AllowAnonymous()
            .ExcludeFromDescription();
        return app;
    }
}

/// <summary>
/// Runs one consume of a batch. A consume whose token is valid and carries the scope goes straight to the consume
/// endpoint's code (with its correlation id, and the exception handling of the pipeline), and gets a request of its own
/// only when its answer is not an allowed spend; any other goes, on a request of its own, through the captured pipeline,
/// whose middleware refuses it exactly as it refuses one sent alone.
/// </summary>
public sealed class ConsumeBatchRunner(IServiceScopeFactory scopes, BearerShortcut bearer, ConsumeHandler handler, IEnumerable<IExceptionHandler> exceptionHandlers,
    IProblemDetailsService problems, ILogger<ConsumeBatchRunner> logger)
{
    private static readonly ActivitySource Source = new(BillingTelemetry.Prefix + ".Usage.ConsumeBatch");
    private readonly IExceptionHandler[] _exceptionHandlers = exceptionHandlers.ToArray();

    internal RequestDelegate? Pipeline { get; set; }

    /// <summary>The consume's answer; never throws (what escapes the pipeline's own error handling is a bare 500).</summary>
    public async Task<BatchedResponse> RunAsync(BatchOrigin batch, BatchedRequest item, SpendWriter.ComingSpend coming)
    {
        try
        {
            return await AnswerAsync(batch, item, coming);
        }
        catch (Exception ex)
        {
            // The batch being aborted, mostly: a bare 500, as the server would give.
            logger.LogWarning(ex, "A batched consume failed outside the request pipeline");
            return new BatchedResponse(StatusCodes.Status500InternalServerError, [], []);
        }
    }

    private async Task<BatchedResponse> AnswerAsync(BatchOrigin batch, BatchedRequest item, SpendWriter.ComingSpend coming)
    {
        // The consume's own span, a child of the gateway's span of the same consume (its traceparent), as a proxied request's would be.
        using var activity = StartActivity(item.Headers);
        BatchedResponse response;
        if (IsJson(item.Headers.GetValueOrDefault("Content-Type"))
            && await bearer.AuthorizeAsync(item.Headers.GetValueOrDefault("Authorization"), BillingPolicies.Usage) is { } user)
        {
            response = await ConsumeAsync(batch, item, coming, user);
        }
        else
        {
            var context = ContextFor(batch, item, coming);
            await RunPipelineAsync(context);
            response = ResponseOf(context);
        }
        activity?.SetTag("http.response.status_code", response.Status);
        return response;
    }

    /// <summary>
    /// The consume endpoint's code, with the correlation id and exception handling the middleware would give it. An
    /// allowed spend (nearly every consume) is answered straight from the handler's JSON; anything else — a refusal, a
    /// problem, an exception — is written by the same code as for a consume sent alone, on a request made for it then.
    /// </summary>
    private async Task<BatchedResponse> ConsumeAsync(BatchOrigin batch, BatchedRequest item, SpendWriter.ComingSpend coming, ClaimsPrincipal user)
    {
        var correlationId = CorrelationId.Take(item.Headers.GetValueOrDefault(CorrelationId.Header));
        using (CorrelationId.BeginScope(correlationId, logger))
        {
            IResult result;
            try
            {
                var (request, errors) = ConsumeRequestReader.Read(item.Body);
                result = await ConsumeEndpoints.DecideAsync(request, errors, handler, coming, batch.Aborted);
                if (result is ContentHttpResult { StatusCode: StatusCodes.Status200OK, ResponseContent: { } body, ContentType: { } type })
                {
                    return new BatchedResponse(StatusCodes.Status200OK, new Dictionary<string, string> { ["Content-Type"] = type }, Encoding.UTF8.GetBytes(body));
                }
            }
            catch (Exception ex) when (!batch.Aborted.IsCancellationRequested)
            {
                var failed = ContextFor(batch, item, coming, user, correlationId);
                await HandleAsync(failed, ex);
                return ResponseOf(failed);
            }

            var context = ContextFor(batch, item, coming, user, correlationId);
            try
            {
                await result.ExecuteAsync(context);
            }
            catch (Exception ex) when (!batch.Aborted.IsCancellationRequested)
            {
                await HandleAsync(context, ex);
            }
            return ResponseOf(context);
        }
    }

    /// <summary>As UseExceptionHandler does: the registered handlers first, else a 500 problem.</summary>
    private async Task HandleAsync(HttpContext context, Exception ex)
    {
        context.Response.Clear();
        context.Response.StatusCode = StatusCodes.Status500InternalServerError;
        foreach (var exceptionHandler in _exceptionHandlers)
        {
            if (await exceptionHandler.TryHandleAsync(context, ex, context.RequestAborted))
            {
                return;
            }
        }
        logger.LogError(ex, "An unhandled exception has occurred while executing a batched consume");
        await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            Exception = ex,
            ProblemDetails = new ProblemDetails { Status = StatusCodes.Status500InternalServerError },
        });
    }

    /// <summary>A request of its own for a consume of the batch (its answer is written to memory).</summary>
    private static DefaultHttpContext ContextFor(BatchOrigin batch, BatchedRequest item, SpendWriter.ComingSpend coming)
    {
        var context = new DefaultHttpContext { RequestServices = batch.Services, RequestAborted = batch.Aborted };
        var request = context.Request;
        request.Method = HttpMethods.Post;
        request.Scheme = batch.Scheme;
        request.Host = batch.Host;
        request.Protocol = batch.Protocol;
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
        context.Connection.RemoteIpAddress = batch.RemoteIpAddress;
        context.Connection.RemotePort = batch.RemotePort;
        context.Response.Body = new MemoryStream();
        context.Items[ConsumeBatchEndpoints.ComingKey] = coming;
        return context;
    }

    /// <summary>The request of a consume whose caller the shortcut has checked, with its correlation id.</summary>
    private static DefaultHttpContext ContextFor(BatchOrigin batch, BatchedRequest item, SpendWriter.ComingSpend coming, ClaimsPrincipal user,
        string correlationId)
    {
        var context = ContextFor(batch, item, coming);
        context.User = user;
        CorrelationId.Adopt(context, correlationId);
        return context;
    }

    private static BatchedResponse ResponseOf(HttpContext context) => new(context.Response.StatusCode,
        ConsumeBatch.Pick(context.Response.Headers, ConsumeBatch.ResponseHeaders), ((MemoryStream)context.Response.Body).ToArray());

    /// <summary>The whole middleware pipeline from <see cref="ConsumeBatchEndpoints.UseConsumeBatches"/> on (routing first), with a scope of its own.</summary>
    private async Task RunPipelineAsync(HttpContext context)
    {
        var pipeline = Pipeline ?? throw new InvalidOperationException("UseConsumeBatches() was not called.");
        await using var scope = scopes.CreateAsyncScope();
        context.RequestServices = scope.ServiceProvider;
        await pipeline(context);
    }

    /// <summary>A body the consume endpoint accepts (<c>application/json</c>, with or without a charset); others are routed to its 415.</summary>
    private static bool IsJson(string? contentType) =>
        string.Equals(contentType, "application/json", StringComparison.OrdinalIgnoreCase)
        || (Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(contentType, out var type) && type.IsSubsetOf(Json));

    private static readonly Microsoft.Net.Http.Headers.MediaTypeHeaderValue Json = new("application/json");

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

/// <summary>
/// What a batched consume takes from the batch's request (its services, abort token, scheme, host, protocol and peer),
/// read once on the batch's own thread: <see cref="HttpContext"/> is not thread-safe, and the consumes run on others.
/// </summary>
public sealed record BatchOrigin(IServiceProvider Services, CancellationToken Aborted, string Scheme, HostString Host, string Protocol,
    System.Net.IPAddress? RemoteIpAddress, int RemotePort)
{
    public static BatchOrigin Of(HttpContext http) => new(http.RequestServices, http.RequestAborted, http.Request.Scheme, http.Request.Host,
        http.Request.Protocol, http.Connection.RemoteIpAddress, http.Connection.RemotePort);
}
