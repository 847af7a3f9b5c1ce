using Billing.ServiceDefaults;
using Microsoft.IdentityModel.Tokens;

namespace Billing.Platform.Tests;

/// <summary>The validated-token cache in front of JWT validation: it may skip work, never a refusal.</summary>
public sealed class Token_cache_Specs
{
    private const string Key = "token-cache-specs-signing-key-0123456789abcdef";
    private static readonly DateTimeOffset Start = DateTimeOffset.UtcNow;

    [Test]
    public async Task A_valid_token_is_validated_once_and_then_answered_from_the_cache()
    {
        var (cache, inner, _) = Create(TimeSpan.FromSeconds(60));
        var token = Token(Key, expires: Start.AddMinutes(10));

        var first = await cache.ValidateTokenAsync(token, Parameters());
        var second = await cache.ValidateTokenAsync(token, Parameters());

        Assert.That((first.IsValid, second.IsValid, inner.Calls), Is.EqualTo((true, true, 1)));
        Assert.That(second.ClaimsIdentity.FindFirst("sub")?.Value, Is.EqualTo("u42"));
    }

    [Test]
    public async Task A_refused_token_is_never_remembered()
    {
        var (cache, inner, _) = Create(TimeSpan.FromSeconds(60));
        var forged = Token("another-key-that-is-long-enough-0123456789abcdef", expires: Start.AddMinutes(10));

        var first = await cache.ValidateTokenAsync(forged, Parameters());
        var second = await cache.ValidateTokenAsync(forged, Parameters());

        Assert.That((first.IsValid, second.IsValid, inner.Calls), Is.EqualTo((false, false, 2)));
    }

    [Test]
    public async Task A_remembered_validation_ends_after_the_maximum_age()
    {
        var (cache, inner, clock) = Create(TimeSpan.FromSeconds(60));
        var token = Token(Key, expires: Start.AddMinutes(10));
        await cache.ValidateTokenAsync(token, Parameters());

        clock.Now = Start.AddSeconds(61);
        await cache.ValidateTokenAsync(token, Parameters());

        Assert.That(inner.Calls, Is.EqualTo(2));
    }

    [Test]
    public async Task A_remembered_validation_never_outlives_the_token()
    {
        var (cache, inner, clock) = Create(TimeSpan.FromHours(1));
        var token = Token(Key, expires: Start.AddMinutes(2));
        await cache.ValidateTokenAsync(token, Parameters());

        clock.Now = Start.AddMinutes(1);
        await cache.ValidateTokenAsync(token, Parameters());
        Assert.That(inner.Calls, Is.EqualTo(1), "still within the token's lifetime");

        clock.Now = Start.AddMinutes(2).AddSeconds(1);
        await cache.ValidateTokenAsync(token, Parameters());
        Assert.That(inner.Calls, Is.EqualTo(2), "past the token's expiry the real validation decides again");
    }

    private static (CachingTokenHandler Cache, CountingTokenHandler Inner, ManualClock Clock) Create(TimeSpan maxAge)
    {
        var inner = new CountingTokenHandler();
        var clock = new ManualClock { Now = Start };
        return (new CachingTokenHandler(inner, maxAge, clock), inner, clock);
    }

    private static TokenValidationParameters Parameters() => TestTokens.Parameters(Key);

    private static string Token(string key, DateTimeOffset expires) => TestTokens.Signed(key, "billing.usage", Start, expires);
}
