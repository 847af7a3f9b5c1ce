using Billing.Catalog;
using Billing.ServiceDefaults;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Api.Wallet;
using Billing.Usage.Core.Consuming;

namespace Billing.Usage.Api.Consuming;

/// <summary>
/// Finishes token-paid consumes nobody finished. A consume on a <c>tokens</c> meter claims its key, then Wallet debits;
/// if Wallet's answer is lost (a timeout after it debited) and the caller never retries, the claim would stay open with
/// the tokens taken and no spend allowed. After <see cref="Timeout"/> (<c>Usage:TokenClaimTimeoutSeconds</c>, 120 s) the
/// sweeper asks Wallet to give back whatever it took under the key (or to cancel the key, if it took nothing) and
/// records the consume as 409 <c>consume_expired</c>. A retry under the key is only finished by the request path while
/// the claim is younger than half that time, so the two never work on the same claim at once.
/// </summary>
public sealed class TokenClaimExpiry(ConsumptionStore store, WalletClient wallet, BillingCatalog catalog, TimeProvider clock, IConfiguration configuration,
    ILogger<TokenClaimExpiry> logger)
{
    public static readonly string ExpiredAnswer = ConsumeHandler.Serialize(ConsumeHandler.ProblemOf(Problems.Problem(409, "consume_expired",
        "The consume was not confirmed in time.",
        "Paying it with purchased tokens could not be confirmed in time, so nothing was spent and any tokens taken went back; consume again with a new idempotency key.")));

    private readonly HashSet<string> _reported = [];

    public TimeSpan Timeout { get; } = TimeSpan.FromSeconds(Math.Clamp(configuration.GetValue("Usage:TokenClaimTimeoutSeconds", 120), 10, 86_400));

    /// <summary>True when a claim made at <paramref name="claimedAt"/> is left to the sweeper.</summary>
    public bool TooOldToFinish(DateTime claimedAt) =>
        clock.GetUtcNow() - new DateTimeOffset(DateTime.SpecifyKind(claimedAt, DateTimeKind.Utc)) > Timeout / 2;

    /// <summary>Expires the claims older than <see cref="Timeout"/>; returns how many it finished.</summary>
    public async Task<int> ExpireStaleAsync(CancellationToken cancellationToken)
    {
        var finished = 0;
        foreach (var claim in await store.StaleClaimsAsync(clock.GetUtcNow() - Timeout, 200, cancellationToken))
        {
            var allowance = ConsumePolicy.TokenAllowance(catalog, claim.Meter);
            if (allowance is null)
            {
                Report(claim, "no plan of the catalog prices the meter in tokens any more");
                continue;
            }
            WalletReturn answer;
            try
            {
                answer = await wallet.ReturnAsync(claim.UserId, ConsumePolicy.TokensFor(allowance, claim.Quantity), claim.IdempotencyKey,
                    "consume never confirmed", cancellationToken);
            }
            catch (WalletUnavailableException ex)
            {
                logger.LogWarning(ex, "Expiring token claims: Wallet is unavailable; trying again at the next sweep");
                return finished;
            }
            if (answer == WalletReturn.Conflict)
            {
                Report(claim, "Wallet holds a debit of another amount under the key (did tokensPerUnit change?)");
                continue;
            }
            await store.SettleTokensAsync(claim.IdempotencyKey, 409, ExpiredAnswer, null, cancellationToken);
            finished++;
        }
        return finished;
    }

    private void Report(StaleTokenClaim claim, string why)
    {
        lock (_reported)
        {
            if (!_reported.Add(claim.IdempotencyKey))
            {
                return;
            }
        }
        logger.LogError("The token claim {Key} of {UserId} ({Quantity} {Meter}) cannot be expired: {Why}; it stays open, check the wallet by hand",
            claim.IdempotencyKey, claim.UserId, claim.Quantity, claim.Meter, why);
    }
}
