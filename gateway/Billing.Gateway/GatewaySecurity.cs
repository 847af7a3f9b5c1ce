using System.Globalization;
using System.Threading.RateLimiting;
using Billing.ServiceDefaults;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.RateLimiting;
using Yarp.ReverseProxy.Model;

namespace Billing.Gateway;

/// <summary>The gateway's protections in front of the services: rate limits, CORS and request size limits.</summary>
internal static class GatewaySecurity
{
    /// <summary>Per-user limits (partitioned by the validated token's <c>sub</c>), named as the routes use them.</summary>
    public static readonly IReadOnlyDictionary<string, RateLimit> UserLimits = new Dictionary<string, RateLimit>
    {
        ["checkout"] = new(Burst: 20, PerMinute: 20),
        ["portal"] = new(Burst: 20, PerMinute: 20),
        ["plan-change"] = new(Burst: 10, PerMinute: 10),
        ["stripe-preview"] = new(Burst: 30, PerMinute: 30), // change preview and upcoming invoice: each asks Stripe
        ["refunds"] = new(Burst: 60, PerMinute: 60),
    };

    /// <summary>Per client address: Stripe delivers in bursts (a renewal run, a replay of a backlog), so generous.</summary>
    public static readonly IReadOnlyDictionary<string, RateLimit> AddressLimits = new Dictionary<string, RateLimit>
    {
        ["webhooks"] = new(Burst: 10000, PerMinute: 600000), // Stripe bursts: thousands a second from few addresses
    };

    /// <summary>Bodies of API routes that name no limit of their own (the webhook route names 1 MiB).</summary>
    public const long DefaultMaxRequestBodyBytes = 64 * 1024;

    public static WebApplicationBuilder AddGatewaySecurity(this WebApplicationBuilder builder)
    {
        var config = builder.Configuration;

        builder.Services.AddRateLimiter(options =>
        {
            options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            options.OnRejected = OnRejectedAsync;
            foreach (var (name, defaults) in UserLimits)
            {
                var limit = RateLimit.From(config.GetSection($"RateLimits:{name}"), defaults);
                options.AddPolicy(name, context => RateLimitPartition.GetTokenBucketLimiter(
                    "user:" + (context.User.UserId() ?? "ip:" + context.Connection.RemoteIpAddress), _ => limit.Options()));
            }
            foreach (var (name, defaults) in AddressLimits)
            {
                var limit = RateLimit.From(config.GetSection($"RateLimits:{name}"), defaults);
                options.AddPolicy(name, context => RateLimitPartition.GetTokenBucketLimiter(
                    "ip:" + context.Connection.RemoteIpAddress, _ => limit.Options()));
            }
        });

        // The frontends' origins (BILLING_CORS_ORIGINS, comma-separated). None configured: no cross-origin access.
        var origins = (config["BILLING_CORS_ORIGINS"] ?? "")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(o => o.TrimEnd('/'))
            .ToArray();
        builder.Services.AddCors(options => options.AddDefaultPolicy(policy =>
        {
            if (origins.Length > 0)
            {
                policy.WithOrigins(origins)
                    .WithMethods("GET", "POST")
                    .WithHeaders("Authorization", "Content-Type", CorrelationId.Header, "Idempotency-Key")
                    .WithExposedHeaders(CorrelationId.Header, "Retry-After")
                    .SetPreflightMaxAge(TimeSpan.FromMinutes(10));
            }
        }));
        return builder;
    }

    /// <summary>
    /// Refuses a body over the route's limit (its <c>MaxRequestBodySize</c>, else <c>Gateway:MaxRequestBodyBytes</c>) with
    /// 413 before anything is forwarded; a chunked body is cut off by Kestrel at the same limit.
    /// </summary>
    public static IApplicationBuilder UseRequestBodyLimits(this IApplicationBuilder app, IConfiguration config)
    {
        var fallback = MaxRequestBodyBytes(config);
        return app.Use(async (context, next) =>
        {
            var endpoint = context.GetEndpoint();
            if (endpoint is not null)
            {
                // A proxied route's own limit; the gateway's own endpoints (the batched consume) have the default.
                var limit = endpoint.Metadata.GetMetadata<RouteModel>()?.Config.MaxRequestBodySize is long l and > 0 ? l : fallback;
                if (context.Request.ContentLength > limit)
                {
                    await Problems.Problem(StatusCodes.Status413PayloadTooLarge, "payload_too_large",
                        "The request body is too large.", $"At most {limit} bytes are accepted here.").ExecuteAsync(context);
                    return;
                }
                if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } feature)
                {
                    feature.MaxRequestBodySize = limit;
                }
            }
            await next(context);
        });
    }

    /// <summary>The body limit of the routes that name none (the gateway's own endpoints among them).</summary>
    public static long MaxRequestBodyBytes(IConfiguration config) =>
        config.GetValue<long?>("Gateway:MaxRequestBodyBytes") ?? DefaultMaxRequestBodyBytes;

    private static async ValueTask OnRejectedAsync(OnRejectedContext rejected, CancellationToken cancellationToken)
    {
        var context = rejected.HttpContext;
        var seconds = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter)
            ? Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds))
            : 1;
        context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        await Problems.Problem(StatusCodes.Status429TooManyRequests, "rate_limited", "Too many requests.",
                $"Try again in {seconds} second(s).", new Dictionary<string, object?> { ["retryAfter"] = seconds })
            .ExecuteAsync(context);
    }
}

/// <summary>A token bucket: <paramref name="Burst"/> requests at once, refilled at <paramref name="PerMinute"/> a minute.</summary>
internal sealed record RateLimit(int Burst, int PerMinute)
{
    public static RateLimit From(IConfigurationSection section, RateLimit defaults) => new(
        section.GetValue<int?>("Burst") ?? defaults.Burst,
        section.GetValue<int?>("PerMinute") ?? defaults.PerMinute);

    public TokenBucketRateLimiterOptions Options()
    {
        // Refill every second where the rate allows it, so Retry-After is short and honest.
        var perSecond = PerMinute / 60.0;
        var (tokens, period) = perSecond >= 1
            ? ((int)Math.Round(perSecond), TimeSpan.FromSeconds(1))
            : (1, TimeSpan.FromSeconds(60.0 / Math.Max(1, PerMinute)));
        return new TokenBucketRateLimiterOptions
        {
            TokenLimit = Math.Max(1, Burst),
            TokensPerPeriod = tokens,
            ReplenishmentPeriod = period,
            QueueLimit = 0,
            AutoReplenishment = true,
        };
    }
}
