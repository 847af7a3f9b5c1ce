using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading.Channels;
using Billing.ServiceDefaults;
using Yarp.ReverseProxy;

namespace Billing.Gateway;

/// <summary>
/// <c>POST /api/usage/consume</c>, the hot path, answered by coalescing: the consumes that arrive together go to Usage as
/// one request (<see cref="ConsumeBatch"/>), up to <c>MaxBatch</c> each, <c>Senders</c> batches in flight, and each
/// caller gets exactly the status, headers and body Usage gave its own consume, as soon as Usage has it (answers stream
/// back one per line). A proxied request costs the gateway and Usage an HTTP exchange of framework work each per
/// consume; a batch shares one among many. Nothing waits to fill a batch: a sender takes whatever is queued when it is
/// free. Deploy Usage before a gateway that batches (an older Usage has no batch endpoint: every consume would get 502). Usage's addresses, health and HTTP client are the YARP
/// cluster's (<c>usage</c>). <c>Gateway:ConsumeBatching:Enabled=false</c> turns it off; the YARP route then proxies each.
/// </summary>
internal static class ConsumeBatching
{
    public static WebApplicationBuilder AddConsumeBatching(this WebApplicationBuilder builder)
    {
        builder.Services.Configure<ConsumeBatchingOptions>(builder.Configuration.GetSection("Gateway:ConsumeBatching"));
        builder.Services.AddSingleton<ConsumeBatcher>();
        return builder;
    }

    public static WebApplication MapBatchedConsume(this WebApplication app)
    {
        if (!Enabled(app))
        {
            return app;
        }
        app.MapPost(ConsumeBatch.ItemPath, AnswerAsync)
            .RequireAuthorization(BillingPolicies.Usage)
            .WithDisplayName("usage-consume (batched)")
            .WithMetadata(BatchedConsumeEndpoint.Instance);
        return app;
    }

    /// <summary>
    /// The shortcut of the hot path, between the error handling and the authentication: a request routed to the batched
    /// consume, with a body within the limit and a bearer token that the scheme's handlers accept and the endpoint's policy
    /// allows, goes straight to the endpoint (the middleware it skips — authentication, authorization, rate limiting, the
    /// body limit — would have let it through unchanged: the endpoint has no rate limit). Any other request, refusals
    /// included, goes on through the middleware, which answers it as before. About a third of the gateway's allocations
    /// per consume were that middleware's (measured 2026-11-27).
    /// </summary>
    public static void UseBatchedConsumeShortcut(this WebApplication app)
    {
        if (!Enabled(app))
        {
            return;
        }
        var limit = GatewaySecurity.MaxRequestBodyBytes(app.Configuration);
        var bearer = app.Services.GetRequiredService<BearerShortcut>();
        var batcher = app.Services.GetRequiredService<ConsumeBatcher>();
        app.Use(async (context, next) =>
        {
            if (context.GetEndpoint()?.Metadata.GetMetadata<BatchedConsumeEndpoint>() is not null
                && context.Request.ContentLength is long length && length <= limit
                && await bearer.AuthorizeAsync(context.Request.Headers.Authorization, BillingPolicies.Usage) is { } user)
            {
                context.User = user;
                await AnswerAsync(context, batcher);
                return;
            }
            await next(context);
        });
    }

    /// <summary><c>Gateway:ConsumeBatching:Enabled</c>: the endpoint and its shortcut exist only together.</summary>
    private static bool Enabled(WebApplication app) =>
        app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<ConsumeBatchingOptions>>().Value.Enabled;

    /// <summary>The batched consume endpoint: queues the consume and answers with what Usage answered it.</summary>
    private static async Task AnswerAsync(HttpContext context, ConsumeBatcher batcher)
    {
        var headers = ConsumeBatch.Pick(context.Request.Headers, ConsumeBatch.RequestHeaders);
        if (Activity.Current is { IdFormat: ActivityIdFormat.W3C } activity)
        {
            // Usage's span of this consume becomes a child of this one, as with a proxied request.
            headers["traceparent"] = activity.Id!;
            if (activity.TraceStateString is { } state)
            {
                headers["tracestate"] = state;
            }
        }
        using var body = new MemoryStream(context.Request.ContentLength is > 0 and < int.MaxValue ? (int)context.Request.ContentLength : 256);
        await context.Request.Body.CopyToAsync(body, context.RequestAborted);
        var answer = await batcher.SendAsync(new BatchedRequest(headers, body.ToArray())).WaitAsync(context.RequestAborted);
        context.Response.StatusCode = answer.Status;
        foreach (var (name, value) in answer.Headers)
        {
            if (ConsumeBatch.ResponseHeaders.Contains(name, StringComparer.OrdinalIgnoreCase))
            {
                context.Response.Headers[name] = value;
            }
        }
        if (answer.Body.Length > 0)
        {
            context.Response.ContentLength = answer.Body.Length;
            await context.Response.Body.WriteAsync(answer.Body, context.RequestAborted);
        }
    }

    /// <summary>Marks the batched consume endpoint for the shortcut.</summary>
    private sealed class BatchedConsumeEndpoint
    {
        public static readonly BatchedConsumeEndpoint Instance = new();
    }
}

/// <summary><c>Gateway:ConsumeBatching</c>.</summary>
internal sealed class ConsumeBatchingOptions
{
    public bool Enabled { get; set; } = true;

    /// <summary>At most this many consumes in one request to Usage.</summary>
    public int MaxBatch { get; set; } = 64;

    /// <summary>
    /// Batches in flight at once. Four, not two: with two, a consume that arrives while both are out waits for one to
    /// come back, which at 16 connections cost more than smaller batches do (measured 2026-11-27, README).
    /// </summary>
    public int Senders { get; set; } = 4;

    /// <summary>A sender whose batch is not answered after this long sends the next one meanwhile.</summary>
    public int DetachAfterMs { get; set; } = 50;

    /// <summary>Consumes waiting for a sender; beyond that the gateway answers 503 at once.</summary>
    public int MaxQueued { get; set; } = 10_000;

    /// <summary>The YARP cluster whose destinations and HTTP client the batches use.</summary>
    public string Cluster { get; set; } = "usage";
}

/// <summary>Queues consumes and sends them to Usage in batches; see <see cref="ConsumeBatching"/>.</summary>
internal sealed class ConsumeBatcher : IAsyncDisposable
{
    private sealed record Waiting(BatchedRequest Request, TaskCompletionSource<BatchedResponse> Answer);

    private static readonly BatchedResponse BadGateway = new((int)HttpStatusCode.BadGateway, [], []);
    private static readonly BatchedResponse Unavailable = new((int)HttpStatusCode.ServiceUnavailable, [], []);
    private static readonly BatchedResponse TimedOut = new((int)HttpStatusCode.GatewayTimeout, [], []);

    private readonly Channel<Waiting> _queue;
    private readonly IProxyStateLookup _proxy;
    private readonly ConsumeBatchingOptions _options;
    private readonly ILogger<ConsumeBatcher> _logger;
    private readonly Task[] _senders;
    private int _next;

    public ConsumeBatcher(IProxyStateLookup proxy, Microsoft.Extensions.Options.IOptions<ConsumeBatchingOptions> options, ILogger<ConsumeBatcher> logger)
    {
        _proxy = proxy;
        _options = options.Value;
        _logger = logger;
        _queue = Channel.CreateBounded<Waiting>(new BoundedChannelOptions(Math.Max(1, _options.MaxQueued)) { FullMode = BoundedChannelFullMode.Wait });
        // Plain tasks, not a hosted service: they must outlive the host's stop, until Kestrel has drained the last request.
        // Started without the first consume's execution context, whose trace and correlation id they would otherwise keep.
        using (ExecutionContext.SuppressFlow())
        {
            _senders = Enumerable.Range(0, Math.Max(1, _options.Senders)).Select(_ => Task.Run(SendLoopAsync)).ToArray();
        }
    }

    /// <summary>
    /// Queues one consume; completes with Usage's answer to it, or a bare 503 (queue full, no healthy destination),
    /// 502 (Usage could not be reached or answered nonsense) or 504 (no answer within the cluster's activity timeout).
    /// </summary>
    public Task<BatchedResponse> SendAsync(BatchedRequest request)
    {
        var waiting = new Waiting(request, new TaskCompletionSource<BatchedResponse>(TaskCreationOptions.RunContinuationsAsynchronously));
        if (!_queue.Writer.TryWrite(waiting))
        {
            waiting.Answer.TrySetResult(Unavailable);
        }
        return waiting.Answer.Task;
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await Task.WhenAll(_senders).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    private async Task SendLoopAsync()
    {
        var max = Math.Clamp(_options.MaxBatch, 1, ConsumeBatch.MaxItems);
        var detachAfter = TimeSpan.FromMilliseconds(Math.Max(1, _options.DetachAfterMs));
        while (await _queue.Reader.WaitToReadAsync())
        {
            var batch = new List<Waiting>(max);
            while (batch.Count < max && _queue.Reader.TryRead(out var next))
            {
                batch.Add(next);
            }
            if (batch.Count == 0)
            {
                continue;
            }
            // The next batch leaves when this one is answered — that is what gathers consumes into batches — or, if it
            // is slow (a consume waiting for Wallet), after DetachAfterMs: its answers keep arriving on their own.
            // WaitAsync drops its timer as soon as the batch is answered (a Task.Delay would keep one per batch alive
            // for the whole DetachAfterMs); SendBatchAsync never throws, so only the timeout is suppressed here.
            await SendBatchAsync(batch).WaitAsync(detachAfter).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>Sends one batch and completes each consume's answer as its line arrives; never throws.</summary>
    private async Task SendBatchAsync(List<Waiting> batch)
    {
        var fallback = BadGateway;
        try
        {
            fallback = await ExchangeAsync(batch);
        }
        catch (Exception ex)
        {
            _logger.LogError(ex, "A batch of {Count} consumes failed", batch.Count);
        }
        foreach (var waiting in batch)
        {
            waiting.Answer.TrySetResult(fallback); // those Usage did not answer
        }
    }

    /// <summary>One request to a healthy Usage destination; returns what the consumes it did not answer get.</summary>
    private async Task<BatchedResponse> ExchangeAsync(List<Waiting> batch)
    {
        if (!_proxy.TryGetCluster(_options.Cluster, out var cluster) || cluster.DestinationsState.AvailableDestinations is not { Count: > 0 } destinations)
        {
            return Unavailable; // as YARP answers when no destination is healthy
        }
        var destination = destinations[(int)((uint)Interlocked.Increment(ref _next) % (uint)destinations.Count)];
        var address = destination.Model.Config.Address;
        var config = cluster.Model.Config.HttpRequest;
        using var timeout = new CancellationTokenSource(config?.ActivityTimeout ?? TimeSpan.FromSeconds(100));
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(new Uri(address.TrimEnd('/') + "/"), ConsumeBatch.Path.TrimStart('/')))
            {
                Content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(batch.Select(w => w.Request), ConsumeBatch.Json)),
                Version = config?.Version ?? HttpVersion.Version11,
                VersionPolicy = config?.VersionPolicy ?? HttpVersionPolicy.RequestVersionOrLower,
            };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var response = await cluster.Model.HttpClient.SendAsync(request, timeout.Token);
            if (!response.IsSuccessStatusCode)
            {
                _logger.LogWarning("Usage at {Address} answered a batch of {Count} consumes with {Status}", address, batch.Count, (int)response.StatusCode);
                return BadGateway;
            }
            await using var stream = await response.Content.ReadAsStreamAsync(timeout.Token);
            await foreach (var answer in JsonSerializer.DeserializeAsyncEnumerable<BatchedAnswer>(stream, topLevelValues: true, ConsumeBatch.Json, timeout.Token))
            {
                if (answer?.Response is not { Status: >= 100 and <= 599, Headers: not null, Body: not null } || answer.Index < 0 || answer.Index >= batch.Count)
                {
                    _logger.LogWarning("Usage at {Address} answered a consume of a batch with nonsense", address);
                    return BadGateway;
                }
                batch[answer.Index].Answer.TrySetResult(answer.Response);
            }
            return BadGateway;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            _logger.LogWarning("Usage at {Address} did not answer {Count} consumes within the activity timeout", address, batch.Count);
            return TimedOut; // as YARP answers a request that timed out
        }
        catch (Exception ex) when (ex is HttpRequestException or JsonException or IOException)
        {
            _logger.LogWarning(ex, "A batch of {Count} consumes could not reach Usage at {Address}", batch.Count, address);
            return BadGateway;
        }
    }
}
