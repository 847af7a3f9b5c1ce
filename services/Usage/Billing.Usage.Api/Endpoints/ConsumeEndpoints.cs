using Billing.ServiceDefaults;
using Billing.Usage.Api.Consuming;
using Billing.Usage.Api.Spending;
using Billing.Usage.Core.Consuming;

namespace Billing.Usage.Api.Endpoints;

/// <summary>POST /api/usage/consume: may this user spend one more? (scope <c>billing.usage</c>)</summary>
public static class ConsumeEndpoints
{
    public static IEndpointRouteBuilder MapConsumeApi(this IEndpointRouteBuilder app)
    {
        app.MapGroup("/api/usage").RequireAuthorization(BillingPolicies.Usage).WithTags("Usage")
            .MapPost("/consume", (HttpRequest http, ConsumeHandler handler, SpendWriter writer, CancellationToken cancellationToken) =>
                ConsumeAsync(http, handler, writer, cancellationToken))
            .WithName("ConsumeQuota")
            .WithSummary("Checks and spends a user's allowance of a meter, once per idempotency key.")
            .Accepts<ConsumeBody>("application/json")
            .Produces<ConsumeAllowed>()
            .ProducesProblem(400)
            .ProducesProblem(402)
            .ProducesProblem(409);
        return app;
    }

    /// <summary>
    /// One consume: reads the body, decides and spends. A consume of a gateway's batch comes here only through the
    /// pipeline; the batch runner's shortcut reads the body itself and calls <see cref="DecideAsync"/>.
    /// </summary>
    internal static async Task<IResult> ConsumeAsync(HttpRequest http, ConsumeHandler handler, SpendWriter writer, CancellationToken cancellationToken)
    {
        // A batch announces its consumes before it runs them (ConsumeBatchEndpoints), so the writer waits for all of them.
        using var coming = http.HttpContext.Items[ConsumeBatchEndpoints.ComingKey] as SpendWriter.ComingSpend ?? writer.Expect();
        var (request, errors) = await ConsumeRequestReader.ReadAsync(http, cancellationToken);
        return await DecideAsync(request, errors, handler, coming, cancellationToken);
    }

    /// <summary>A consume whose body has been read: its validation problem, or the handler's answer (and the metric).</summary>
    internal static async Task<IResult> DecideAsync(ConsumeRequest? request, Dictionary<string, string[]> errors, ConsumeHandler handler,
        SpendWriter.ComingSpend coming, CancellationToken cancellationToken)
    {
        if (request is null)
        {
            return Problems.Validation(errors);
        }
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var result = await handler.HandleAsync(request, cancellationToken, coming);
        BillingMetrics.RecordConsume(request.Meter, ResultOf(result), System.Diagnostics.Stopwatch.GetElapsedTime(started));
        return result;
    }

    /// <summary>The consume body, for the OpenAPI document (the endpoint reads it by hand).</summary>
    public sealed record ConsumeBody(string UserId, string Meter, long Quantity, string IdempotencyKey, IReadOnlyList<string>? Groups);

    /// <summary>The metric's result label: the source of an allowed spend, or the refusal's code.</summary>
    private static string ResultOf(IResult result) => result switch
    {
        Microsoft.AspNetCore.Http.HttpResults.ProblemHttpResult p when p.ProblemDetails.Extensions.TryGetValue("code", out var c) => c?.ToString() ?? "problem",
        Microsoft.AspNetCore.Http.HttpResults.ContentHttpResult { StatusCode: 200 } => "allowed",
        Microsoft.AspNetCore.Http.IStatusCodeHttpResult { StatusCode: { } status } => status.ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => "other",
    };
}
