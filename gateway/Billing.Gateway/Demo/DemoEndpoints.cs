using System.Security.Claims;
using System.Text;
using System.Text.RegularExpressions;
using Billing.ServiceDefaults;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Billing.Gateway.Demo;

/// <summary>
/// The click-through demo at <c>/demo</c> (local runs only): a sign-in that mints a user token for any user id, and a
/// "Generate" action that spends one unit of a meter for the signed-in user with a service token the browser never sees.
/// Switched on by <c>BILLING_DEMO=1</c> (set by <c>deploy/billing up/test</c> on the simulator) and never with an OIDC
/// authority, nor with real Stripe (no <c>STRIPE_API_BASE</c>, one on stripe.com, or a live key): a setting copied into
/// production must not hand out tokens for any user. When off, nothing under <c>/demo</c> is served.
/// </summary>
internal static partial class DemoEndpoints
{
    public const string UsageClient = "demo-usage";

    public static bool IsEnabled(IConfiguration configuration) =>
        configuration["BILLING_DEMO"] == "1"
        && string.IsNullOrWhiteSpace(configuration["BILLING_OIDC_AUTHORITY"])
        && !string.IsNullOrWhiteSpace(configuration["BILLING_JWT_SIGNING_KEY"])
        && OnTheSimulator(configuration);

    /// <summary>Stripe is reached at an API base of its own (the simulator), not stripe.com, and no live key is set.</summary>
    private static bool OnTheSimulator(IConfiguration configuration) =>
        Uri.TryCreate(configuration["STRIPE_API_BASE"], UriKind.Absolute, out var apiBase)
        && !apiBase.Host.EndsWith("stripe.com", StringComparison.OrdinalIgnoreCase)
        && !(configuration["STRIPE_SECRET_KEY"] ?? "").Contains("_live_", StringComparison.Ordinal);

    public static WebApplicationBuilder AddBillingDemo(this WebApplicationBuilder builder)
    {
        if (IsEnabled(builder.Configuration))
        {
            builder.Services.AddHttpClient(UsageClient, c => c.Timeout = TimeSpan.FromSeconds(15));
        }
        return builder;
    }

    /// <summary>Public static files (<c>wwwroot</c>: the web elements and the demo), before authentication.</summary>
    public static WebApplication UseBillingStaticFiles(this WebApplication app)
    {
        var demo = IsEnabled(app.Configuration);
        app.UseWhen(c => !demo && c.Request.Path.StartsWithSegments("/demo"), b => b.Run(c =>
        {
            c.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        }));
        app.UseDefaultFiles();
        app.UseStaticFiles(new StaticFileOptions
        {
            // Elements are small and change with the gateway: always revalidate (ETag), never serve a stale module.
            OnPrepareResponse = c => c.Context.Response.Headers.CacheControl = "no-cache",
        });
        return app;
    }

    public static WebApplication MapBillingDemo(this WebApplication app)
    {
        if (!IsEnabled(app.Configuration))
        {
            return app;
        }
        var group = app.MapGroup("/demo/api").ExcludeFromDescription();
        group.MapPost("/session", (SessionRequest body, IConfiguration configuration) =>
        {
            if (body.UserId is not { } userId || !UserIdPattern().IsMatch(userId))
            {
                return Results.Problem(statusCode: 400, title: "A user id of 1-64 letters, digits, '.', '_', '-' or '@' is needed.",
                    extensions: new Dictionary<string, object?> { ["code"] = "validation" });
            }
            var expires = DateTime.UtcNow.AddHours(8);
            var token = Mint(configuration, userId, scope: null, email: userId.Contains('@') ? userId : userId + "@example.com", expires);
            return Results.Ok(new { userId, userToken = token, expiresAt = expires });
        }).AllowAnonymous();

        group.MapPost("/generate", async (GenerateRequest body, ClaimsPrincipal user, IConfiguration configuration, IHttpClientFactory clients,
            CancellationToken cancellationToken) =>
        {
            var usage = configuration["ReverseProxy:Clusters:usage:Destinations:main:Address"] ?? "http://127.0.0.1:8083/";
            var serviceToken = Mint(configuration, "demo-ai", scope: "billing.usage", email: null, DateTime.UtcNow.AddMinutes(5));
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(new Uri(usage), "/api/usage/consume"))
            {
                Content = JsonContent.Create(new
                {
                    userId = user.UserId(),
                    meter = string.IsNullOrWhiteSpace(body.Meter) ? "ai.generation" : body.Meter,
                    quantity = Math.Clamp(body.Quantity ?? 1, 1, 10_000),
                    idempotencyKey = string.IsNullOrWhiteSpace(body.IdempotencyKey) ? "demo-" + Guid.NewGuid().ToString("N") : body.IdempotencyKey,
                    groups = user.Groups(),
                }),
            };
            request.Headers.Authorization = new("Bearer", serviceToken);
            using var response = await clients.CreateClient(UsageClient).SendAsync(request, cancellationToken);
            var answer = await response.Content.ReadAsStringAsync(cancellationToken);
            // The usage service's answer as it is (200 allowed, 402 problem with its code), so the page sees what an AI backend sees.
            return Results.Content(answer, response.Content.Headers.ContentType?.ToString() ?? "application/json", Encoding.UTF8, (int)response.StatusCode);
        }).RequireAuthorization(BillingPolicies.User);
        return app;
    }

    private static string Mint(IConfiguration configuration, string subject, string? scope, string? email, DateTime expires)
    {
        var claims = new Dictionary<string, object> { ["sub"] = subject };
        if (scope is not null)
        {
            claims["scope"] = scope;
        }
        if (email is not null)
        {
            claims["email"] = email;
        }
        var now = DateTime.UtcNow;
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = configuration["BILLING_JWT_ISSUER"] is { Length: > 0 } i ? i : "billing-local",
            Audience = configuration["BILLING_JWT_AUDIENCE"] is { Length: > 0 } a ? a : "billing",
            Claims = claims,
            IssuedAt = now,
            NotBefore = now,
            Expires = expires,
            SigningCredentials = new SigningCredentials(
                new SymmetricSecurityKey(Encoding.UTF8.GetBytes(configuration["BILLING_JWT_SIGNING_KEY"]!)), SecurityAlgorithms.HmacSha256),
        });
    }

    [GeneratedRegex("^[A-Za-z0-9._@-]{1,64}$")]
    private static partial Regex UserIdPattern();

    internal sealed record SessionRequest(string? UserId);

    internal sealed record GenerateRequest(string? Meter, long? Quantity, string? IdempotencyKey);
}
