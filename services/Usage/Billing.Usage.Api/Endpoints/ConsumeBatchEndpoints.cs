using System.Diagnostics;
using System.Security.Claims;
using System.Text.Json;
using Billing.ServiceDefaults;
using Billing.Usage.Api.Consuming;
using Billing.Usage.Api.Spending;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;

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

/// <summary>
/// Runs one consume of a batch on a request of its own. A consume whose token is valid and carries the scope goes
/// straight to the consume endpoint's code (with its correlation id, and the exception handling of the pipeline); any
/// other goes through the captured pipeline, whose middleware refuses it exactly as it refuses one sent alone.
/// </summary>
public sealed class ConsumeBatchRunner(IServiceScopeFactory scopes, EndpointDataSource endpoints, IOptionsMonitor<JwtBearerOptions> jwt,
    IAuthorizationService authorization, ConsumeHandler handler, SpendWriter writer, IEnumerable<IExceptionHandler> exceptionHandlers,
    IProblemDetailsService problems, ILogger<ConsumeBatchRunner> logger)
{
    private static readonly ActivitySource Source = new(BillingTelemetry.Prefix + ".Usage.ConsumeBatch");
    private readonly IExceptionHandler[] _exceptionHandlers = exceptionHandlers.ToArray();
    private Endpoint? _consume;

    internal RequestDelegate? Pipeline { get; set; }

    public async Task<BatchedResponse> RunAsync(HttpContext batch, BatchedRequest item, SpendWriter.ComingSpend coming)
    {
        var context = new DefaultHttpContext { RequestServices = batch.RequestServices, RequestAborted = batch.RequestAborted };
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

        // The consume's own span, a child of the gateway's span of the same consume (its traceparent), as a proxied request's would be.
        using var activity = StartActivity(item.Headers);
        try
        {
            if (await AuthorizedAsync(context) is { } user)
            {
                context.User = user;
                await ConsumeAsync(context);
            }
            else
            {
                await RunPipelineAsync(context);
            }
        }
        catch (Exception ex)
        {
            // What escaped the exception handling (the batch being aborted): a bare 500, as the server would give.
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

    /// <summary>
    /// The caller, when the bearer token is valid (the JWT bearer scheme's own handlers and parameters, with its token
    /// cache) and the <c>billing.usage</c> policy allows it; null otherwise, for the pipeline to answer.
    /// </summary>
    private async Task<ClaimsPrincipal?> AuthorizedAsync(HttpContext context)
    {
        string? header = context.Request.Headers.Authorization;
        if (header is null || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        var token = header["Bearer ".Length..].Trim();
        var options = jwt.Get(JwtBearerDefaults.AuthenticationScheme);
        var parameters = options.TokenValidationParameters;
        if (options.ConfigurationManager is { } manager)
        {
            // As JwtBearerHandler does with an OIDC authority: its issuer and signing keys.
            var configuration = await manager.GetConfigurationAsync(context.RequestAborted);
            parameters = parameters.Clone();
            parameters.ValidIssuers = (parameters.ValidIssuers ?? []).Append(configuration.Issuer);
            parameters.IssuerSigningKeys = (parameters.IssuerSigningKeys ?? []).Concat(configuration.SigningKeys);
        }
        foreach (var tokenHandler in options.TokenHandlers)
        {
            var result = await tokenHandler.ValidateTokenAsync(token, parameters);
            if (result.IsValid)
            {
                var user = new ClaimsPrincipal(result.ClaimsIdentity);
                return (await authorization.AuthorizeAsync(user, BillingPolicies.Usage)).Succeeded ? user : null;
            }
        }
        return null;
    }

    /// <summary>The consume endpoint's code, with the correlation id and exception handling the middleware would give it.</summary>
    private async Task ConsumeAsync(HttpContext context)
    {
        using (CorrelationId.Begin(context, logger))
        {
            try
            {
                var result = await ConsumeEndpoints.ConsumeAsync(context.Request, handler, writer, context.RequestAborted);
                await result.ExecuteAsync(context);
            }
            catch (Exception ex) when (!context.RequestAborted.IsCancellationRequested)
            {
                // As UseExceptionHandler does: the registered handlers first, else a 500 problem.
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
        }
    }

    /// <summary>The whole middleware pipeline from <see cref="ConsumeBatchEndpoints.UseConsumeBatches"/> on, with a scope of its own.</summary>
    private async Task RunPipelineAsync(HttpContext context)
    {
        var pipeline = Pipeline ?? throw new InvalidOperationException("UseConsumeBatches() was not called.");
        _consume ??= endpoints.Endpoints.Single(e => e.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName == "ConsumeQuota");
        await using var scope = scopes.CreateAsyncScope();
        context.RequestServices = scope.ServiceProvider;
        context.SetEndpoint(_consume);
        await pipeline(context);
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
