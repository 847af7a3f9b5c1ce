using System.Collections.Concurrent;
using System.Security.Claims;
using System.Text;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;

namespace Billing.ServiceDefaults;

/// <summary>The authorization policies of API.md's "Identity" section.</summary>
public static class BillingPolicies
{
    /// <summary>Any valid token with a <c>sub</c>: an end user acting for themself.</summary>
    public const string User = "user";
    /// <summary>An internal AI service: <c>scope</c> contains <c>billing.usage</c>.</summary>
    public const string Usage = "billing.usage";
    /// <summary>An administrator: <c>scope</c> contains <c>billing.admin</c>.</summary>
    public const string Admin = "billing.admin";
    /// <summary>No token needed (catalog, webhooks, health).</summary>
    public const string Anonymous = "anonymous";
}

/// <summary>Reads the caller's identity from a validated token; a client-supplied identity header is never read.</summary>
public static class ClaimsPrincipalExtensions
{
    /// <summary>The user id (<c>sub</c>).</summary>
    public static string? UserId(this ClaimsPrincipal user) => user.FindFirst("sub")?.Value;

    /// <summary>The groups of the token (<c>groups</c>, a JSON array or a single string).</summary>
    public static IReadOnlyList<string> Groups(this ClaimsPrincipal user) =>
        user.FindAll("groups").Select(c => c.Value).Where(v => v.Length > 0).Distinct(StringComparer.Ordinal).ToList();

    /// <summary>True when the space-separated <c>scope</c> (or <c>scp</c>) claims contain <paramref name="scope"/>.</summary>
    public static bool HasScope(this ClaimsPrincipal user, string scope) =>
        user.FindAll(c => c.Type is "scope" or "scp")
            .SelectMany(c => c.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Contains(scope, StringComparer.Ordinal);
}

internal static class AuthExtensions
{
    /// <summary>
    /// JWT bearer validation of issuer, audience, lifetime and signature. Production: an OIDC authority
    /// (<c>BILLING_OIDC_AUTHORITY</c>); local: HS256 with <c>BILLING_JWT_SIGNING_KEY</c>.
    /// </summary>
    public static void AddBillingAuthentication(this WebApplicationBuilder builder)
    {
        var config = builder.Configuration;
        var issuer = config["BILLING_JWT_ISSUER"] is { Length: > 0 } i ? i : "billing-local";
        var audience = config["BILLING_JWT_AUDIENCE"] is { Length: > 0 } a ? a : "billing";
        var authority = config["BILLING_OIDC_AUTHORITY"];
        var signingKey = config["BILLING_JWT_SIGNING_KEY"];
        if (string.IsNullOrWhiteSpace(authority) && string.IsNullOrWhiteSpace(signingKey))
        {
            throw new InvalidOperationException(
                "Set BILLING_OIDC_AUTHORITY (production) or BILLING_JWT_SIGNING_KEY (local HS256, at least 32 characters).");
        }
        if (string.IsNullOrWhiteSpace(authority) && signingKey!.Length < 32)
        {
            throw new InvalidOperationException("BILLING_JWT_SIGNING_KEY must be at least 32 characters (256 bits).");
        }

        var cacheSeconds = config.GetValue("BILLING_TOKEN_CACHE_SECONDS", 60);
        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer(options =>
        {
            options.MapInboundClaims = false;
            if (cacheSeconds > 0)
            {
                // The same token on every call of an AI service: validate it once, not on every request.
                for (var h = 0; h < options.TokenHandlers.Count; h++)
                {
                    options.TokenHandlers[h] = new CachingTokenHandler(options.TokenHandlers[h], TimeSpan.FromSeconds(cacheSeconds), TimeProvider.System);
                }
            }
            options.TokenValidationParameters = new TokenValidationParameters
            {
                ValidateIssuer = true,
                ValidIssuer = issuer,
                ValidateAudience = true,
                ValidAudience = audience,
                ValidateLifetime = true,
                RequireExpirationTime = true,
                ClockSkew = TimeSpan.FromSeconds(30),
                NameClaimType = "sub",
            };
            if (!string.IsNullOrWhiteSpace(authority))
            {
                options.Authority = authority;
                options.RequireHttpsMetadata = authority.StartsWith("https://", StringComparison.OrdinalIgnoreCase);
            }
            else
            {
                options.TokenValidationParameters.ValidateIssuerSigningKey = true;
                options.TokenValidationParameters.ValidAlgorithms = [SecurityAlgorithms.HmacSha256];
                options.TokenValidationParameters.IssuerSigningKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(signingKey!));
            }
        });

        builder.Services.AddSingleton<BearerShortcut>();
        builder.Services.AddAuthorizationBuilder()
            .AddPolicy(BillingPolicies.User, p => p.RequireAuthenticatedUser().RequireClaim("sub"))
            .AddPolicy(BillingPolicies.Usage, p => p.RequireAuthenticatedUser().RequireAssertion(c => c.User.HasScope("billing.usage")))
            .AddPolicy(BillingPolicies.Admin, p => p.RequireAuthenticatedUser().RequireAssertion(c => c.User.HasScope("billing.admin")))
            // Every endpoint needs a token unless it says otherwise.
            .SetFallbackPolicy(new AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build());
    }
}

/// <summary>
/// Remembers successful validations by the token's exact text, for at most <c>maxAge</c> (BILLING_TOKEN_CACHE_SECONDS,
/// default 60; 0 turns it off) and never past the token's own expiry, so an AI service that sends the same token on
/// every call pays for one validation (signature, issuer, audience, lifetime) a minute instead of one a request.
/// Failures are never remembered. The price: with an OIDC authority, a token signed by a key that was withdrawn stays
/// accepted for at most <c>maxAge</c>.
/// </summary>
public sealed class CachingTokenHandler(TokenHandler inner, TimeSpan maxAge, TimeProvider time) : TokenHandler
{
    private const int MaxEntries = 10_000;
    private readonly ConcurrentDictionary<string, (TokenValidationResult Result, DateTimeOffset Until)> _valid = new(StringComparer.Ordinal);

    public override async Task<TokenValidationResult> ValidateTokenAsync(string token, TokenValidationParameters validationParameters)
    {
        var now = time.GetUtcNow();
        if (_valid.TryGetValue(token, out var known))
        {
            if (now < known.Until)
            {
                return known.Result;
            }
            _valid.TryRemove(token, out _);
        }

        var result = await inner.ValidateTokenAsync(token, validationParameters);
        if (RememberUntil(result, now) is { } until)
        {
            if (_valid.Count >= MaxEntries)
            {
                _valid.Clear();
            }
            _valid[token] = (result, until);
        }
        return result;
    }

    /// <summary>How long a validation may be remembered: <c>maxAge</c> from <paramref name="now"/>, never past the token's expiry; null for a failure.</summary>
    internal DateTimeOffset? RememberUntil(TokenValidationResult result, DateTimeOffset now)
    {
        if (!result.IsValid || result.SecurityToken is not { ValidTo: var validTo } || validTo <= DateTime.MinValue)
        {
            return null;
        }
        var until = new DateTimeOffset(DateTime.SpecifyKind(validTo, DateTimeKind.Utc));
        return until > now + maxAge ? now + maxAge : until;
    }

    /// <summary>The clock the remembered validations expire by.</summary>
    internal TimeProvider Time => time;

    public override SecurityToken ReadToken(string token) => inner.ReadToken(token);

    public override Task<TokenValidationResult> ValidateTokenAsync(SecurityToken token, TokenValidationParameters validationParameters) =>
        inner.ValidateTokenAsync(token, validationParameters);
}
