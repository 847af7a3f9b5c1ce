using System.Net;
using Microsoft.Extensions.Configuration;

namespace Billing.ServiceDefaults;

/// <summary>
/// Where Checkout and the customer portal may send a user back to: the origins of <c>BILLING_PUBLIC_URL</c>, of the
/// frontends (<c>BILLING_CORS_ORIGINS</c>) and of <c>BILLING_RETURN_ORIGINS</c> (comma-separated), and loopback for local
/// work. Anything else would make Billing's genuine Stripe links an open redirect: an attacker starts a checkout with their
/// own account and a phishing page as its return URL, and sends the link around.
/// </summary>
public sealed class ReturnOrigins(IReadOnlySet<string> origins)
{
    public IReadOnlySet<string> Origins { get; } = origins;

    /// <summary><c>BILLING_PUBLIC_URL</c> without a trailing slash (the gateway's local address when unset): the base of the default return pages.</summary>
    public static string PublicUrl(IConfiguration configuration) =>
        (configuration["BILLING_PUBLIC_URL"] is { Length: > 0 } u ? u : "http://127.0.0.1:8080").TrimEnd('/');

    public static ReturnOrigins From(IConfiguration configuration)
    {
        var listed = new[] { PublicUrl(configuration) }
            .Concat(Split(configuration["BILLING_CORS_ORIGINS"]))
            .Concat(Split(configuration["BILLING_RETURN_ORIGINS"]))
            .Select(o => Uri.TryCreate(o, UriKind.Absolute, out var uri) ? Origin(uri) : null)
            .OfType<string>();
        return new ReturnOrigins(new HashSet<string>(listed, StringComparer.OrdinalIgnoreCase));
    }

    /// <summary>True when <paramref name="url"/> is on an allowed origin or on this machine.</summary>
    public bool Allows(Uri url) =>
        Origins.Contains(Origin(url)) || url.IsLoopback || IPAddress.TryParse(url.Host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip);

    private static string Origin(Uri uri) => uri.GetLeftPart(UriPartial.Authority).ToLowerInvariant();

    private static IEnumerable<string> Split(string? list) =>
        (list ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
