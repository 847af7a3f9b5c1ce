namespace Billing.Catalog;

/// <summary>Where a checkout or the customer portal may send a user back: the one rule every sale's request follows.</summary>
public static class ReturnUrl
{
    /// <summary>
    /// An absolute http(s) URL of at most 2,000 characters on an origin <paramref name="allowed"/> accepts (where Billing may
    /// send a user back), or null when none was given; a bad one is named in <paramref name="errors"/> under
    /// <paramref name="field"/>.
    /// </summary>
    public static string? Check(string? url, string field, Dictionary<string, string[]> errors, Func<Uri, bool>? allowed = null)
    {
        if (url is null)
        {
            return null;
        }
        if (url.Length > 2000 || !Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            errors[field] = ["an absolute http(s) URL"];
            return null;
        }
        if (allowed is not null && !allowed(uri))
        {
            errors[field] = ["a URL on one of the frontends' origins (BILLING_PUBLIC_URL, BILLING_CORS_ORIGINS, BILLING_RETURN_ORIGINS)"];
            return null;
        }
        return url;
    }
}
