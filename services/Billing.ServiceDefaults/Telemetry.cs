using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Billing.ServiceDefaults;

/// <summary>The names of Billing's own activity sources and meters.</summary>
public static class BillingTelemetry
{
    /// <summary>Prefix of every Billing <see cref="System.Diagnostics.ActivitySource"/> and meter.</summary>
    public const string Prefix = "Billing";
}

internal static class TelemetryExtensions
{
    public static void AddBillingTelemetry(this WebApplicationBuilder builder, string serviceName)
    {
        builder.Services.Configure<Microsoft.Extensions.Logging.LoggerFactoryOptions>(o => o.ActivityTrackingOptions =
            Microsoft.Extensions.Logging.ActivityTrackingOptions.TraceId | Microsoft.Extensions.Logging.ActivityTrackingOptions.SpanId);

        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(serviceName))
            .WithTracing(tracing => tracing
                .AddAspNetCoreInstrumentation(o => o.Filter = ctx => !ctx.Request.Path.StartsWithSegments("/health"))
                .AddHttpClientInstrumentation()
                .AddSource("MassTransit")
                .AddSource("Npgsql")
                .AddSource("Yarp.ReverseProxy")
                .AddSource(BillingTelemetry.Prefix + ".*"))
            .WithMetrics(metrics => metrics
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddRuntimeInstrumentation()
                .AddMeter("MassTransit")
                .AddMeter("Npgsql")
                .AddMeter(BillingTelemetry.Prefix + ".*"));

        if (!string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            otel.UseOtlpExporter();
        }
    }
}
