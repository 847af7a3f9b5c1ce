using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Billing.ServiceDefaults;

internal static class ForwardedHeadersSetup
{
    /// <summary>
    /// <c>X-Forwarded-For</c> / <c>-Proto</c> are believed only from loopback and from the proxies and networks in
    /// <c>BILLING_TRUSTED_PROXIES</c> (comma-separated addresses or CIDR ranges, e.g. the ingress controller's pod
    /// network <c>10.0.0.0/8</c>). Anyone else's forwarded headers are ignored, so a client cannot choose the address
    /// its rate limit is counted against.
    /// </summary>
    public static void AddBillingForwardedHeaders(this IServiceCollection services, IConfiguration configuration)
    {
        var trusted = (configuration["BILLING_TRUSTED_PROXIES"] ?? "")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        services.Configure<ForwardedHeadersOptions>(options =>
        {
            options.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
            options.ForwardLimit = 2;
            foreach (var entry in trusted)
            {
                if (entry.Contains('/'))
                {
                    options.KnownIPNetworks.Add(System.Net.IPNetwork.Parse(entry));
                }
                else if (IPAddress.TryParse(entry, out var address))
                {
                    options.KnownProxies.Add(address);
                }
                else
                {
                    throw new InvalidOperationException($"BILLING_TRUSTED_PROXIES: '{entry}' is neither an IP address nor a CIDR range.");
                }
            }
        });
    }
}
