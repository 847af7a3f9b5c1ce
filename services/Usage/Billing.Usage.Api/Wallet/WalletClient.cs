using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Billing.Contracts;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Billing.Usage.Api.Wallet;

/// <summary>Wallet's answer to a debit.</summary>
public abstract record WalletDebit
{
    private WalletDebit()
    {
    }

    public sealed record Debited(long Balance, string TransactionId) : WalletDebit;

    public sealed record Insufficient(long Balance) : WalletDebit;

    /// <summary>Wallet saw the key with another user or amount.</summary>
    public sealed record Conflict : WalletDebit;
}

/// <summary>Wallet's answer to a return of unused tokens.</summary>
public enum WalletReturn
{
    /// <summary>The tokens are back in the wallet (now or by an earlier call).</summary>
    Returned,

    /// <summary>The key was never debited; Wallet has cancelled it, so no later debit under it takes anything.</summary>
    NothingDebited,

    /// <summary>Wallet holds another return (or another user) under the key.</summary>
    Conflict,
}

/// <summary>Wallet could not be reached or failed; nothing was spent and the same key may be retried.</summary>
public sealed class WalletUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Wallet's internal API (<c>POST /internal/wallet/debit</c> and <c>/returns</c>, scope billing.usage), reached at
/// <c>Services:wallet</c>. A debit carries a key of Usage's own for the claim (consume or reservation), so Wallet debits
/// once however often it is asked, and gives back at most once per debit.
/// </summary>
public sealed class WalletClient(HttpClient http, ServiceToken token, Persistence.TokenBalanceStore balances)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>
    /// Debits <paramref name="amount"/> once under <paramref name="idempotencyKey"/>. An amount over what one Wallet
    /// operation may move (<see cref="TokenLimits.MaxPerOperation"/>) is not sent — Wallet would refuse it as invalid, and
    /// a retry could never succeed — but answered as not enough tokens, with the balance Usage last heard of.
    /// </summary>
    public async Task<WalletDebit> DebitAsync(string userId, long amount, string idempotencyKey, string reference, CancellationToken cancellationToken)
    {
        if (amount > TokenLimits.MaxPerOperation)
        {
            return new WalletDebit.Insufficient(await balances.KnownAsync(userId, cancellationToken));
        }
        using (var response = await PostAsync("internal/wallet/debit", new { userId, amount, idempotencyKey, reference }, cancellationToken))
        {
            var body = await ReadAsync(response, cancellationToken);
            switch (response.StatusCode)
            {
                case HttpStatusCode.OK when body.TryGetProperty("balance", out var balance):
                    return new WalletDebit.Debited(balance.GetInt64(),
                        body.TryGetProperty("transactionId", out var id) ? id.ToString() : "");
                case HttpStatusCode.PaymentRequired:
                    return new WalletDebit.Insufficient(body.TryGetProperty("balance", out var left) && left.ValueKind == JsonValueKind.Number ? left.GetInt64() : 0);
                case HttpStatusCode.Conflict:
                    return new WalletDebit.Conflict();
                default:
                    throw new WalletUnavailableException($"Wallet answered {(int)response.StatusCode} to a debit.");
            }
        }
    }

    /// <summary>Gives back <paramref name="amount"/> of the tokens debited under <paramref name="idempotencyKey"/>; once, however often it is asked.</summary>
    public Task<(WalletReturn Outcome, long? Balance)> ReturnAsync(string userId, long amount, string idempotencyKey, string reason, CancellationToken cancellationToken) =>
        ReturnAsync(new { userId, amount, idempotencyKey, reason }, cancellationToken);

    /// <summary>Gives back all the debit under <paramref name="idempotencyKey"/> took, or cancels the key when it took nothing.</summary>
    public Task<(WalletReturn Outcome, long? Balance)> ReturnAllAsync(string userId, string idempotencyKey, string reason, CancellationToken cancellationToken) =>
        ReturnAsync(new { userId, all = true, idempotencyKey, reason }, cancellationToken);

    private async Task<(WalletReturn Outcome, long? Balance)> ReturnAsync(object payload, CancellationToken cancellationToken)
    {
        using (var response = await PostAsync("internal/wallet/returns", payload, cancellationToken))
        {
            var body = await ReadAsync(response, cancellationToken);
            long? balance = body.ValueKind == JsonValueKind.Object && body.TryGetProperty("balance", out var b) && b.ValueKind == JsonValueKind.Number
                ? b.GetInt64() : null;
            return response.StatusCode switch
            {
                HttpStatusCode.OK when body.ValueKind == JsonValueKind.Object && body.TryGetProperty("debited", out var debited) =>
                    (debited.ValueKind == JsonValueKind.True ? WalletReturn.Returned : WalletReturn.NothingDebited, balance),
                HttpStatusCode.Conflict => (WalletReturn.Conflict, null),
                _ => throw new WalletUnavailableException($"Wallet answered {(int)response.StatusCode} to a return."),
            };
        }
    }

    /// <summary>POSTs with Usage's service token; a Wallet that does not answer is a <see cref="WalletUnavailableException"/>.</summary>
    private async Task<HttpResponseMessage> PostAsync(string path, object payload, CancellationToken cancellationToken)
    {
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(payload, options: Json) };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token.Get());
            return await http.SendAsync(request, cancellationToken);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or InvalidOperationException && !cancellationToken.IsCancellationRequested)
        {
            throw new WalletUnavailableException("Wallet did not answer: " + ex.Message, ex);
        }
    }

    private static async Task<JsonElement> ReadAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        try
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
        }
        catch (JsonException)
        {
            return default;
        }
    }
}

/// <summary>
/// The bearer token Usage shows Wallet: <c>Services:walletToken</c> when configured (production: issued by the identity
/// provider), else a short-lived HS256 token with scope billing.usage signed with the local key.
/// </summary>
public sealed class ServiceToken(IConfiguration configuration)
{
    private readonly object _gate = new();
    private (string Token, DateTimeOffset RenewAt)? _current;

    public string Get()
    {
        if (configuration["Services:walletToken"] is { Length: > 0 } configured)
        {
            return configured;
        }
        // Wallet checks a token's lifetime against the real clock, not Billing's (possibly simulated) one.
        var now = TimeProvider.System.GetUtcNow();
        lock (_gate)
        {
            if (_current is { } c && c.RenewAt > now)
            {
                return c.Token;
            }
            var key = configuration["BILLING_JWT_SIGNING_KEY"]
                ?? throw new InvalidOperationException("No Services:walletToken and no BILLING_JWT_SIGNING_KEY: Usage cannot call Wallet.");
            var token = new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
            {
                Issuer = configuration["BILLING_JWT_ISSUER"] is { Length: > 0 } i ? i : "billing-local",
                Audience = configuration["BILLING_JWT_AUDIENCE"] is { Length: > 0 } a ? a : "billing",
                Claims = new Dictionary<string, object> { ["sub"] = "svc-usage", ["scope"] = "billing.usage" },
                IssuedAt = now.UtcDateTime,
                NotBefore = now.UtcDateTime.AddSeconds(-5),
                Expires = now.UtcDateTime.AddMinutes(10),
                SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)), SecurityAlgorithms.HmacSha256),
            });
            _current = (token, now.AddMinutes(5));
            return token;
        }
    }
}
