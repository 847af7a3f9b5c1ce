using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Billing.ServiceDefaults;

/// <summary>What every Billing service and the gateway share: telemetry, health, problem details, auth, OpenAPI.</summary>
public static class HostingExtensions
{
    /// <summary>Adds telemetry, problem details, JWT auth with Billing's policies, health checks and OpenAPI.</summary>
    public static WebApplicationBuilder AddServiceDefaults(this WebApplicationBuilder builder, string serviceName)
    {
        builder.AddBillingTelemetry(serviceName);
        builder.AddBillingLogging();
        builder.Services.AddBillingForwardedHeaders(builder.Configuration);
        BillingClock.AddBillingClock(builder);
        builder.Services.AddBillingProblemDetails();
        builder.AddBillingAuthentication();
        builder.Services.AddHealthChecks();
        builder.Services.AddOpenApi();
        builder.Services.Configure<JsonOptions>(o => o.SerializerOptions.Converters.Add(new System.Text.Json.Serialization.JsonStringEnumConverter()));
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(15));
        return builder;
    }

    /// <summary>
    /// Forwarded headers, correlation id, error handling and auth middleware, in the order they must run;
    /// <paramref name="beforeAuthentication"/> adds middleware between the error handling and the authentication.
    /// </summary>
    public static WebApplication UseServiceDefaults(this WebApplication app, Action<WebApplication>? beforeAuthentication = null)
    {
        app.UseForwardedHeaders();
        app.UseCorrelationId();
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        beforeAuthentication?.Invoke(app);
        app.UseAuthentication();
        app.UseAuthorization();
        return app;
    }

    /// <summary>Maps <c>/health/live</c>, <c>/health/ready</c> and <c>/openapi/v1.json</c>.</summary>
    public static WebApplication MapDefaultEndpoints(this WebApplication app)
    {
        app.MapBillingHealth();
        app.MapOpenApi().AllowAnonymous();
        return app;
    }
}
