using Billing.Client;
using Microsoft.Extensions.Options;

// In the DI namespace, like AddHttpClient, so `services.AddBillingClient(...)` needs no extra using.
namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers <see cref="BillingClient"/> as a typed HttpClient.</summary>
public static class BillingClientServiceCollectionExtensions
{
    /// <summary>
    /// <c>services.AddBillingClient(o => { o.BaseAddress = new("http://gateway:8080"); o.TokenProvider = ct => tokens.GetAsync(ct); })</c>.
    /// Retries live in the client (under one idempotency key), so no resilience handler is added to the HttpClient.
    /// </summary>
    public static IHttpClientBuilder AddBillingClient(this IServiceCollection services, Action<BillingClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<BillingClientOptions>().Configure(configure);
        return services.AddHttpClient<BillingClient, BillingClient>((http, provider) =>
        {
            var options = provider.GetRequiredService<IOptions<BillingClientOptions>>().Value;
            http.BaseAddress ??= options.BaseAddress;
            // Per-attempt timeouts are the client's; the HttpClient's own must not cut the retries short.
            http.Timeout = Timeout.InfiniteTimeSpan;
            return new BillingClient(http, options);
        });
    }
}
