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

    /// <summary>The caller of <paramref name="authorizationHeader"/> when its token is valid and <paramref name="policy"/> allows it; otherwise null.</summary>
    public async Task<ClaimsPrincipal?> AuthorizeAsync(string? authorizationHeader, string policy)
    {
        if (authorizationHeader is null || !authorizationHeader.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
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
                    return (await authorization.AuthorizeAsync(user, policy)).Succeeded ? user : null;
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
