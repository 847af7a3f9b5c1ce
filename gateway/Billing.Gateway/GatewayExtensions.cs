using System.Text.Json;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Transforms;

namespace Billing.Gateway;

internal static class GatewayExtensions
{
    /// <summary>
    /// Headers some proxies and platforms use to carry an authenticated identity. Billing reads identity only from the
    /// validated token; these are dropped so that no service (or something behind it) could ever be fooled by them.
    /// </summary>
    public static readonly string[] IdentityHeaders =
    [
        "X-User-Id", "X-User", "X-User-Email", "X-User-Groups", "X-Email", "X-Groups", "X-Scope", "X-Roles",
        "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Remote-User", "Remote-User",
        "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Authenticated-User",
        "X-Authenticated-Userid", "X-Userinfo", "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-ID",
        "X-MS-CLIENT-PRINCIPAL-NAME", "X-Billing-User", "X-Billing-Scope",
    ];

    public static WebApplicationBuilder AddGatewayProxy(this WebApplicationBuilder builder)
    {
        builder.Services.AddReverseProxy()
            .LoadFromConfig(builder.Configuration.GetSection("ReverseProxy"))
            .AddTransforms(context =>
            {
                foreach (var header in IdentityHeaders)
                {
                    context.AddRequestHeaderRemove(header);
                }
            });
        builder.Services.AddHttpClient(ServicesReadyCheck.HttpClientName, c => c.Timeout = TimeSpan.FromSeconds(3));
        builder.Services.AddHealthChecks().AddCheck<ServicesReadyCheck>("services", tags: ["ready"]);
        return builder;
    }
}

/// <summary>
/// The gateway is ready when every service behind it is: asks each cluster's destinations for
/// <c>/health/ready</c> and lists their own checks (database, broker) in the answer.
/// </summary>
internal sealed class ServicesReadyCheck(IProxyConfigProvider proxyConfig, IHttpClientFactory httpClients) : IHealthCheck
{
    public const string HttpClientName = "gateway-health";

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var client = httpClients.CreateClient(HttpClientName);
        var probes = proxyConfig.GetConfig().Clusters
            .SelectMany(c => (c.Destinations ?? new Dictionary<string, DestinationConfig>()).Select(d => (Cluster: c.ClusterId, d.Value.Address)))
            .Select(async target =>
            {
                try
                {
                    using var response = await client.GetAsync(new Uri(new Uri(target.Address), "/health/ready"), cancellationToken);
                    var body = await response.Content.ReadAsStringAsync(cancellationToken);
                    using var json = JsonDocument.Parse(body);
                    var checks = json.RootElement.TryGetProperty("checks", out var c)
                        ? c.EnumerateArray().Select(x => $"{x.GetProperty("name").GetString()}={x.GetProperty("status").GetString()}")
                        : [];
                    return (target.Cluster, Healthy: response.IsSuccessStatusCode, Detail: string.Join(", ", checks));
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or JsonException or InvalidOperationException)
                {
                    return (target.Cluster, Healthy: false, Detail: "unreachable: " + ex.Message);
                }
            });
        var results = await Task.WhenAll(probes);
        var data = results.ToDictionary(r => r.Cluster, r => (object)((r.Healthy ? "Healthy" : "Unhealthy") + " (" + r.Detail + ")"));
        return results.All(r => r.Healthy)
            ? HealthCheckResult.Healthy("every service is ready", data)
            : HealthCheckResult.Unhealthy("not ready: " + string.Join(", ", results.Where(r => !r.Healthy).Select(r => r.Cluster)), data: data);
    }
}
