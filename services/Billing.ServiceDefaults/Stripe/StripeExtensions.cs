using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Stripe;

namespace Billing.ServiceDefaults.Stripe;

/// <summary>Stripe settings: <c>STRIPE_SECRET_KEY</c>, <c>STRIPE_API_BASE</c> (simulator or WireMock), <c>STRIPE_WEBHOOK_SECRET</c>.</summary>
public sealed record StripeSettings(string SecretKey, string? ApiBase, string? WebhookSecret);

/// <summary>One <see cref="IStripeClient"/> per service, reached only through Stripe.net.</summary>
public static class StripeExtensions
{
    /// <summary>
    /// Registers the Stripe client (Stripe.net, <c>ApiBase</c> from <c>STRIPE_API_BASE</c>) and <see cref="StripeCalls"/>, the
    /// Polly pipeline every call goes through (<c>STRIPE_RETRIES</c>, default 3).
    /// </summary>
    public static TBuilder AddBillingStripe<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        var key = builder.Configuration["STRIPE_SECRET_KEY"];
        if (string.IsNullOrWhiteSpace(key))
        {
            throw new InvalidOperationException("STRIPE_SECRET_KEY is not set (deploy/billing sets a simulator key for local runs).");
        }
        var apiBase = builder.Configuration["STRIPE_API_BASE"] is { Length: > 0 } b ? b.TrimEnd('/') : null;
        var retries = int.TryParse(builder.Configuration["STRIPE_RETRIES"], out var r) ? r : 3;
        var timeout = TimeSpan.FromSeconds(double.TryParse(builder.Configuration["STRIPE_TIMEOUT_SECONDS"], System.Globalization.CultureInfo.InvariantCulture, out var t) && t > 0 ? t : 15);
        var settings = new StripeSettings(key, apiBase, builder.Configuration["STRIPE_WEBHOOK_SECRET"]);
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton<IStripeClient>(_ =>
        {
            var options = new StripeClientOptions
            {
                ApiKey = key,
                HttpClient = new SystemNetHttpClient(new HttpClient { Timeout = timeout + TimeSpan.FromSeconds(5) }, maxNetworkRetries: 0),
            };
            if (apiBase is not null)
            {
                options.ApiBase = apiBase;
                options.MeterEventsBase = apiBase;
                options.FilesBase = apiBase;
                options.ConnectBase = apiBase;
            }
            return new StripeClient(options);
        });
        builder.Services.AddSingleton(sp => new StripeCalls(sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<StripeCalls>>(), retries, timeout));
        builder.Services.AddSingleton<StripePrices>();
        return builder;
    }
}
