using System.Diagnostics;
using Billing.ServiceDefaults.Stripe;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Billing.ServiceDefaults;

/// <summary>RFC 9457 problem details for every error, with a stable <c>code</c> member.</summary>
public static class Problems
{
    /// <summary>A problem result with Billing's stable <c>code</c> and any extra members.</summary>
    public static IResult Problem(int status, string code, string title, string? detail = null, IDictionary<string, object?>? extensions = null)
    {
        var ext = new Dictionary<string, object?>(extensions ?? new Dictionary<string, object?>()) { ["code"] = code };
        return TypedResults.Problem(detail: detail, statusCode: status, title: title, type: $"https://billing.dev/problems/{code.Replace('_', '-')}", extensions: ext);
    }

    /// <summary>400 with the invalid fields listed.</summary>
    public static IResult Validation(IDictionary<string, string[]> errors, string? detail = null) =>
        TypedResults.ValidationProblem(errors, detail: detail, title: "The request is not valid.",
            type: "https://billing.dev/problems/validation", extensions: new Dictionary<string, object?> { ["code"] = "validation" });

    internal static void AddBillingProblemDetails(this IServiceCollection services)
    {
        services.AddProblemDetails(options => options.CustomizeProblemDetails = context =>
        {
            context.ProblemDetails.Instance ??= context.HttpContext.Request.Path;
            context.ProblemDetails.Extensions.TryAdd("traceId", Activity.Current?.TraceId.ToString() ?? context.HttpContext.TraceIdentifier);
            if (CorrelationId.Get(context.HttpContext) is { } correlationId)
            {
                context.ProblemDetails.Extensions.TryAdd("correlationId", correlationId);
            }
            if (!context.ProblemDetails.Extensions.ContainsKey("code"))
            {
                context.ProblemDetails.Extensions["code"] = context.ProblemDetails.Status switch
                {
                    400 => "bad_request",
                    401 => "unauthorized",
                    403 => "forbidden",
                    404 => "not_found",
                    405 => "method_not_allowed",
                    409 => "conflict",
                    413 => "payload_too_large",
                    415 => "unsupported_media_type",
                    429 => "rate_limited",
                    503 => "unavailable",
                    _ => context.ProblemDetails.Status >= 500 ? "internal_error" : "error",
                };
            }
        });
        services.AddExceptionHandler<BadRequestExceptionHandler>();
    }
}

/// <summary>
/// Malformed input that ASP.NET reports by exception (bad JSON, a body over the size limit) is the client's
/// fault: answer its 4xx as a problem, never a 500.
/// </summary>
internal sealed class BadRequestExceptionHandler(IProblemDetailsService problems, ILogger<BadRequestExceptionHandler> logger) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        var (status, title, code) = exception switch
        {
            BadHttpRequestException bad => (bad.StatusCode, bad.StatusCode == 413 ? "The request body is too large." : "The request is not valid.", (string?)null),
            System.Text.Json.JsonException => (400, "The request body is not valid JSON.", null),
            // Text PostgreSQL cannot store (a NUL character): the client's input, and the transaction rolled back.
            Npgsql.PostgresException { SqlState: Npgsql.PostgresErrorCodes.CharacterNotInRepertoire or Npgsql.PostgresErrorCodes.UntranslatableCharacter }
                => (400, "The request contains characters that cannot be stored (such as NUL).", "invalid_characters"),
            Stripe.StripeUnavailableException => (503, "Stripe is unavailable right now; nothing was changed. Try again shortly.", "stripe_unavailable"),
            global::Stripe.StripeException => (502, "Stripe refused the request.", "stripe_error"),
            _ => (0, "", null),
        };
        if (StripePrices.RefusedAPrice(exception))
        {
            // A price a catalog push has archived since it was cached: the user's next attempt looks it up afresh.
            httpContext.RequestServices.GetService<StripePrices>()?.Forget();
        }
        if (status == 0 || httpContext.Response.HasStarted)
        {
            return false;
        }

        logger.LogInformation("Rejected a bad request: {Message}", exception.Message);
        httpContext.Response.StatusCode = status;
        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            ProblemDetails = new ProblemDetails
            {
                Status = status,
                Title = title,
                Detail = exception.Message,
                Extensions = code is null ? new Dictionary<string, object?>() : new Dictionary<string, object?> { ["code"] = code },
            },
            Exception = exception,
        });
    }
}
