namespace Billing.ServiceDefaults.Stripe;

/// <summary>Parts of Stripe idempotency keys.</summary>
public static class IdempotencyKeys
{
    /// <summary>A short stable hash of <paramref name="value"/> (12 hex digits of its SHA-256), for what a key must name but not spell out.</summary>
    public static string Hash(string value) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(value)))[..12];
}
