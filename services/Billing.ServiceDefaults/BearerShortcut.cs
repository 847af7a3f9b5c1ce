using System.Collections.Concurrent;
using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Billing.ServiceDefaults;

/// <summary>
/// The hot path's way past the authentication and authorization middleware: the caller of a bearer token that the JWT
/// bearer scheme's own token handlers (with their validation cache) and parameters accept, when a policy allows it; null
/// otherwise, and then the request goes through the middleware, which answers it (401, 403) exactly as before. Billing's
/// scheme has no events and no claims transformation, so a principal accepted here is the one the middleware would set;
/// a deployment that adds either gets no shortcut.
/// </summary>
public sealed class BearerShortcut(IOptionsMonitor<JwtBearerOptions> jwt, IAuthorizationService authorization, IClaimsTransformation transformation,
    ILogger<BearerShortcut> logger)
{
    private static readonly JwtBearerEvents DefaultEvents = new();

    private const int MaxAllowed = 10_000;

    /// <summary>
    /// Headers whose token a policy allowed, remembered as long as the <see cref="CachingTokenHandler"/> remembers the
    /// token's validation (and never past its expiry): an AI service sends the same token on every call, and checking it
    /// again (the token's text cut out, the policy evaluated) cost the hot path about a tenth of its allocations per consume
    /// in Usage (measured 2026-11-27). Refusals are never remembered.
    /// </summary>
    private readonly ConcurrentDictionary<(string Header, string Policy), (ClaimsIdentity Identity, DateTimeOffset Until, TimeProvider Time)> _allowed = new();

    /// <summary>The caller of <paramref name="authorizationHeader"/> when its token is valid and <paramref name="policy"/> allows it; otherwise null.</summary>
    public async Task<ClaimsPrincipal?> AuthorizeAsync(string? authorizationHeader, string policy)
    {
        if (authorizationHeader is null || !authorizationHeader.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        if (_allowed.TryGetValue((authorizationHeader, policy), out var known))
        {
            if (known.Time.GetUtcNow() < known.Until)
            {
                return new ClaimsPrincipal(known.Identity); // one principal per request, as the middleware makes
            }
            _allowed.TryRemove((authorizationHeader, policy), out _);
        }
        var token = authorizationHeader["Bearer ".Length..].Trim();
        try
        {
            var options = jwt.Get(JwtBearerDefaults.AuthenticationScheme);
            if (!Plain(options))
            {
                return null;
            }
            var parameters = options.TokenValidationParameters;
            if (options.ConfigurationManager is Microsoft.IdentityModel.Tokens.BaseConfigurationManager manager)
            {
                // As JwtBearerHandler does with an OIDC authority: the token handlers take its issuer and keys from it.
                parameters = parameters.Clone();
                parameters.ConfigurationManager = manager;
            }
            else if (options.ConfigurationManager is not null)
            {
                return null; // not a configuration this shortcut knows: the middleware decides
            }
            foreach (var tokenHandler in options.TokenHandlers)
            {
                var result = await tokenHandler.ValidateTokenAsync(token, parameters);
                if (result.IsValid)
                {
                    var user = new ClaimsPrincipal(result.ClaimsIdentity);
                    if (!(await authorization.AuthorizeAsync(user, policy)).Succeeded)
                    {
                        return null;
                    }
                    if (tokenHandler is CachingTokenHandler caching && caching.RememberUntil(result, caching.Time.GetUtcNow()) is { } until)
                    {
                        if (_allowed.Count >= MaxAllowed)
                        {
                            _allowed.Clear();
                        }
                        _allowed[(authorizationHeader, policy)] = (result.ClaimsIdentity, until, caching.Time);
                    }
                    return user;
                }
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            logger.LogDebug(ex, "A token was not checked on the shortcut; the middleware checks it");
        }
        return null;
    }

    /// <summary>No events that could change the token or the principal, and no claims transformation.</summary>
    private bool Plain(JwtBearerOptions options) =>
        transformation is NoopClaimsTransformation
        && options.EventsType is null
        && (options.Events is null || (options.Events.GetType() == typeof(JwtBearerEvents)
            && options.Events.OnMessageReceived == DefaultEvents.OnMessageReceived
            && options.Events.OnTokenValidated == DefaultEvents.OnTokenValidated));
}
