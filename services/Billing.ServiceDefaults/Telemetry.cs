using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
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
    /// <summary>
    /// Console logs carry their scopes (trace id, span id, correlation id). <c>BILLING_LOG_FORMAT=json</c> writes one JSON
    /// object per line (containers, log shippers); anything else the readable single-line format.
    /// </summary>
    public static void AddBillingLogging(this WebApplicationBuilder builder)
    {
        if (string.Equals(builder.Configuration["BILLING_LOG_FORMAT"], "json", StringComparison.OrdinalIgnoreCase))
        {
            builder.Logging.AddJsonConsole(o =>
            {
                o.IncludeScopes = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            });
        }
        else
        {
            builder.Logging.AddSimpleConsole(o =>
            {
                o.IncludeScopes = true;
                o.SingleLine = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            });
        }
    }

    public static void AddBillingTelemetry(this WebApplicationBuilder builder, string serviceName)
    {
        builder.Services.Configure<Microsoft.Extensions.Logging.LoggerFactoryOptions>(o => o.ActivityTrackingOptions =
            Microsoft.Extensions.Logging.ActivityTrackingOptions.TraceId | Microsoft.Extensions.Logging.ActivityTrackingOptions.SpanId);

        var exporting = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(serviceName));

        // Spans are recorded only when they go somewhere (BILLING_TRACING: auto = when an OTLP endpoint is set, on, off):
        // recording them for nobody cost the gateway about 10 % of its CPU per proxied request. Trace ids still flow
        // without it (ASP.NET Core and HttpClient propagate traceparent, the outbox keeps it), so logs stay correlated.
        var tracing = builder.Configuration["BILLING_TRACING"]?.Trim().ToLowerInvariant() switch
        {
            "on" or "true" or "1" => true,
            "off" or "false" or "0" => false,
            _ => exporting,
        };
        if (tracing)
        {
            otel.WithTracing(t => t
                .AddAspNetCoreInstrumentation(o => o.Filter = ctx => !ctx.Request.Path.StartsWithSegments("/health"))
                .AddHttpClientInstrumentation()
                .AddSource("MassTransit")
                .AddSource("Npgsql")
                .AddSource("Yarp.ReverseProxy")
                .AddSource(BillingTelemetry.Prefix + ".*"));
        }

        otel.WithMetrics(metrics => metrics
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddRuntimeInstrumentation()
                .AddMeter("MassTransit")
                .AddMeter("Npgsql")
                .AddMeter(BillingTelemetry.Prefix + ".*"));

        otel.WithLogging(configureBuilder: null, configureOptions: o =>
        {
            o.IncludeScopes = true;
            o.IncludeFormattedMessage = true;
        });

        if (exporting)
        {
            otel.UseOtlpExporter();
        }
    }
}
