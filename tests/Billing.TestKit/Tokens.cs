using System.Security.Claims;
using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Billing.TestKit;

/// <summary>Mints local HS256 tokens the way <c>deploy/billing token</c> does, plus broken ones for security tests.</summary>
public static class Tokens
{
    public static string User(string userId, string? email = null, IEnumerable<string>? groups = null) =>
        Create(userId, email: email, groups: groups);

    public static string Service(string scope = "billing.usage") => Create("svc-" + scope, scope: scope);

    public static string Admin() => Create("admin", scope: "billing.admin");

    public static string Create(string subject, string? scope = null, string? email = null, IEnumerable<string>? groups = null,
        TimeSpan? lifetime = null, string? key = null, string issuer = "billing-local", string audience = "billing", DateTime? notBefore = null)
    {
        var now = DateTime.UtcNow;
        var claims = new Dictionary<string, object> { ["sub"] = subject };
        if (scope is not null)
        {
            claims["scope"] = scope;
        }
        if (email is not null)
        {
            claims["email"] = email;
        }
        if (groups is not null)
        {
            claims["groups"] = groups.ToArray();
        }
        var expires = now + (lifetime ?? TimeSpan.FromHours(1));
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            Claims = claims,
            IssuedAt = notBefore ?? (expires < now ? expires.AddMinutes(-5) : now),
            NotBefore = notBefore ?? (expires < now ? expires.AddMinutes(-5) : now),
            Expires = expires,
            SigningCredentials = new SigningCredentials(
                new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key ?? TestEnvironment.JwtSigningKey)), SecurityAlgorithms.HmacSha256),
        };
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(descriptor);
    }
}
