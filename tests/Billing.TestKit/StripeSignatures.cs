using System.Security.Cryptography;
using System.Text;

namespace Billing.TestKit;

/// <summary>Signs a webhook body the way Stripe does: <c>t=…,v1=hex(HMAC-SHA256(secret, "{t}.{body}"))</c>.</summary>
public static class StripeSignatures
{
    public static string Header(string body, string? secret = null, DateTimeOffset? at = null)
    {
        var timestamp = (at ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds();
        var key = Encoding.UTF8.GetBytes(secret ?? TestEnvironment.WebhookSecret);
        var signature = Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"{timestamp}.{body}")));
        return $"t={timestamp},v1={signature}";
    }
}
