using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Billing.Platform.Tests;

/// <summary>What the token specs share: signed tokens for user u42, a token handler that counts its validations, a clock set by hand.</summary>
internal static class TestTokens
{
    /// <summary>An HS256 token of issuer <c>billing-local</c> and audience <c>billing</c>, valid from a minute before <paramref name="start"/>.</summary>
    public static string Signed(string key, string scope, DateTimeOffset start, DateTimeOffset expires) => new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
    {
        Issuer = "billing-local",
        Audience = "billing",
        Claims = new Dictionary<string, object> { ["sub"] = "u42", ["scope"] = scope },
        IssuedAt = start.UtcDateTime.AddMinutes(-1),
        NotBefore = start.UtcDateTime.AddMinutes(-1),
        Expires = expires.UtcDateTime,
        SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)), SecurityAlgorithms.HmacSha256),
    });

    /// <summary>What the services validate a token against (local HS256 with <paramref name="key"/>).</summary>
    public static TokenValidationParameters Parameters(string key) => new()
    {
        ValidIssuer = "billing-local",
        ValidAudience = "billing",
        IssuerSigningKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)),
        ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
        RequireExpirationTime = true,
        NameClaimType = "sub",
    };
}

/// <summary>The JWT handler, counting the tokens it validates.</summary>
internal sealed class CountingTokenHandler : JsonWebTokenHandler
{
    public int Calls { get; private set; }

    public override Task<TokenValidationResult> ValidateTokenAsync(string token, TokenValidationParameters validationParameters)
    {
        Calls++;
        return base.ValidateTokenAsync(token, validationParameters);
    }
}

internal sealed class ManualClock : TimeProvider
{
    public DateTimeOffset Now { get; set; }

    public override DateTimeOffset GetUtcNow() => Now;
}
