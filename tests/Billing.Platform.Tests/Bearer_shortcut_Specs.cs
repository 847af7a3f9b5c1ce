using System.Security.Claims;
using Billing.ServiceDefaults;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace Billing.Platform.Tests;

/// <summary>
/// The hot path's token check (<see cref="BearerShortcut"/>) remembers a header a policy allowed as long as the token's
/// validation is remembered: it may skip work, never a refusal.
/// </summary>
public sealed class Bearer_shortcut_Specs
{
    private const string Key = "bearer-shortcut-specs-signing-key-0123456789abcdef";
    private static readonly DateTimeOffset Start = DateTimeOffset.UtcNow;

    [Test]
    public async Task An_allowed_header_is_checked_once_and_each_caller_gets_a_principal_of_its_own()
    {
        var (shortcut, validations, evaluations, _) = Create(TimeSpan.FromSeconds(60));
        var header = "Bearer " + Token(scope: "billing.usage", expires: Start.AddMinutes(10));

        var users = new List<ClaimsPrincipal?>();
        for (var i = 0; i < 3; i++)
        {
            users.Add(await shortcut.AuthorizeAsync(header, BillingPolicies.Usage));
        }

        Assert.That(users.Select(u => u?.UserId()), Is.All.EqualTo("u42"));
        Assert.That(users.Distinct().Count(), Is.EqualTo(3), "a principal per request, as the middleware makes");
        Assert.That((validations.Calls, evaluations.Calls), Is.EqualTo((1, 1)));
    }

    [Test]
    public async Task A_refused_header_is_never_remembered()
    {
        var (shortcut, _, evaluations, _) = Create(TimeSpan.FromSeconds(60));
        var header = "Bearer " + Token(scope: "billing.admin", expires: Start.AddMinutes(10));

        var first = await shortcut.AuthorizeAsync(header, BillingPolicies.Usage);
        var second = await shortcut.AuthorizeAsync(header, BillingPolicies.Usage);

        Assert.That((first, second), Is.EqualTo(((ClaimsPrincipal?)null, (ClaimsPrincipal?)null)));
        Assert.That(evaluations.Calls, Is.EqualTo(2), "the policy decides again every time");
    }

    [Test]
    public async Task A_header_is_remembered_for_one_policy_only()
    {
        var (shortcut, _, evaluations, _) = Create(TimeSpan.FromSeconds(60));
        var header = "Bearer " + Token(scope: "billing.usage", expires: Start.AddMinutes(10));

        Assert.That(await shortcut.AuthorizeAsync(header, BillingPolicies.Usage), Is.Not.Null);
        Assert.That(await shortcut.AuthorizeAsync(header, BillingPolicies.Admin), Is.Null);
        Assert.That(evaluations.Calls, Is.EqualTo(2));
    }

    [Test]
    public async Task The_memory_ends_with_the_token_handlers_and_never_outlives_the_token()
    {
        var (shortcut, validations, evaluations, clock) = Create(TimeSpan.FromSeconds(60));
        var header = "Bearer " + Token(scope: "billing.usage", expires: Start.AddSeconds(90));
        await shortcut.AuthorizeAsync(header, BillingPolicies.Usage);

        clock.Now = Start.AddSeconds(59);
        await shortcut.AuthorizeAsync(header, BillingPolicies.Usage);
        Assert.That((validations.Calls, evaluations.Calls), Is.EqualTo((1, 1)), "within the maximum age");

        clock.Now = Start.AddSeconds(61);
        await shortcut.AuthorizeAsync(header, BillingPolicies.Usage);
        Assert.That((validations.Calls, evaluations.Calls), Is.EqualTo((2, 2)), "past the maximum age the token is checked again");

        clock.Now = Start.AddSeconds(91);
        await shortcut.AuthorizeAsync(header, BillingPolicies.Usage);
        Assert.That((validations.Calls, evaluations.Calls), Is.EqualTo((3, 3)), "remembered at 61 s only until the token's expiry at 90 s");
    }

    private static (BearerShortcut Shortcut, CountingTokenHandler Validations, CountingAuthorization Evaluations, ManualClock Clock) Create(TimeSpan maxAge)
    {
        var validations = new CountingTokenHandler();
        var clock = new ManualClock { Now = Start };
        var options = new JwtBearerOptions { MapInboundClaims = false, TokenValidationParameters = TestTokens.Parameters(Key) };
        options.TokenHandlers.Clear();
        options.TokenHandlers.Add(new CachingTokenHandler(validations, maxAge, clock));

        var services = new ServiceCollection().AddLogging().AddAuthorizationCore(o =>
        {
            o.AddPolicy(BillingPolicies.Usage, p => p.RequireAuthenticatedUser().RequireAssertion(c => c.User.HasScope("billing.usage")));
            o.AddPolicy(BillingPolicies.Admin, p => p.RequireAuthenticatedUser().RequireAssertion(c => c.User.HasScope("billing.admin")));
        }).BuildServiceProvider();
        var evaluations = new CountingAuthorization(services.GetRequiredService<IAuthorizationService>());
        var shortcut = new BearerShortcut(new FixedOptions(options), evaluations, new NoopClaimsTransformation(), NullLogger<BearerShortcut>.Instance);
        return (shortcut, validations, evaluations, clock);
    }

    private static string Token(string scope, DateTimeOffset expires) => TestTokens.Signed(Key, scope, Start, expires);

    private sealed class CountingAuthorization(IAuthorizationService inner) : IAuthorizationService
    {
        public int Calls { get; private set; }

        public Task<AuthorizationResult> AuthorizeAsync(ClaimsPrincipal user, object? resource, IEnumerable<IAuthorizationRequirement> requirements)
        {
            Calls++;
            return inner.AuthorizeAsync(user, resource, requirements);
        }

        public Task<AuthorizationResult> AuthorizeAsync(ClaimsPrincipal user, object? resource, string policyName)
        {
            Calls++;
            return inner.AuthorizeAsync(user, resource, policyName);
        }
    }

    private sealed class FixedOptions(JwtBearerOptions options) : IOptionsMonitor<JwtBearerOptions>
    {
        public JwtBearerOptions CurrentValue => options;

        public JwtBearerOptions Get(string? name) => options;

        public IDisposable? OnChange(Action<JwtBearerOptions, string?> listener) => null;
    }
}
