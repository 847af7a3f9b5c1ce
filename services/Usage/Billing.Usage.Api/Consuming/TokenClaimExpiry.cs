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
/// records the consume as 409 <c>consume_expired</c>, holding the claim's row lock from before the return until the
/// settlement. A request starts Wallet's debit only while the claim is younger than half that time, and records Wallet's
/// answer only while it is younger than the timeout (under the same lock), so the two never both finish one claim.
/// </summary>
public sealed class TokenClaimExpiry(ConsumptionStore store, WalletClient wallet, TimeProvider clock, IConfiguration configuration,
    ILogger<TokenClaimExpiry> logger)
{
    public static readonly string ExpiredAnswer = ConsumeHandler.Serialize(ConsumeHandler.ProblemOf(Problems.Problem(409, "consume_expired",
        "The consume was not confirmed in time.",
        "Paying it with purchased tokens could not be confirmed in time, so nothing was spent and any tokens taken went back; consume again with a new idempotency key.")));

    public TimeSpan Timeout { get; } = TimeSpan.FromSeconds(Math.Clamp(configuration.GetValue("Usage:TokenClaimTimeoutSeconds", 120), 10, 86_400));

    /// <summary>True when a claim made at <paramref name="claimedAt"/> is left to the sweeper.</summary>
    public bool TooOldToFinish(DateTime claimedAt) =>
        clock.GetUtcNow() - new DateTimeOffset(DateTime.SpecifyKind(claimedAt, DateTimeKind.Utc)) > Timeout / 2;

    /// <summary>The Wallet debit key of a token-paid consume: its consumption id, never the caller's key.</summary>
    public static string WalletKeyOf(Guid consumptionId) => "consume:" + consumptionId;

    /// <summary>Expires the claims older than <see cref="Timeout"/>; returns how many it finished.</summary>
    public async Task<int> ExpireStaleAsync(CancellationToken cancellationToken)
    {
        var (finished, failedInARow) = (0, 0);
        var now = clock.GetUtcNow();
        foreach (var claim in await store.StaleClaimsAsync(now - Timeout, 200, cancellationToken))
        {
            if (!_backoff.IsDue(claim.IdempotencyKey, now))
            {
                continue;
            }
            // Held (row-locked) from before Wallet gives the tokens back until the claim is settled: a request that debited
            // under it and finishes now cannot record an allowed spend in between.
            await using var held = await store.TakeStaleClaimAsync(claim.IdempotencyKey, cancellationToken);
            if (held is null)
            {
                continue; // finished meanwhile by its request
            }
            WalletReturn answer;
            long? balance;
            try
            {
                // All of whatever the debit took (the claim does not record its price; Wallet's debit does).
                (answer, balance) = await wallet.ReturnAllAsync(claim.UserId, WalletKeyOf(claim.ConsumptionId), "consume never confirmed", cancellationToken);
            }
            catch (WalletUnavailableException ex)
            {
                _backoff.Failed(claim.IdempotencyKey, now);
                logger.LogWarning(ex, "Expiring the token claim {Key}: Wallet did not take the return; trying again later", claim.IdempotencyKey);
                if (++failedInARow == 3)
                {
                    return finished; // Wallet looks down: the rest at a later sweep
                }
                continue;
            }
            failedInARow = 0;
            if (answer == WalletReturn.Conflict)
            {
                if (_backoff.Failed(claim.IdempotencyKey, now) == 1)
                {
                    logger.LogError("The token claim {Key} of {UserId} ({Quantity} {Meter}) cannot be expired: Wallet holds the debit's key for another user or return; it stays open and is retried, check the wallet by hand",
                        claim.IdempotencyKey, claim.UserId, claim.Quantity, claim.Meter);
                }
                continue;
            }
            await held.SettleAsync(409, ExpiredAnswer, balance is { } b ? (claim.UserId, b, clock.GetUtcNow()) : null, cancellationToken);
            _backoff.Done(claim.IdempotencyKey);
            finished++;
        }
        return finished;
    }

    private readonly RetryBackoff _backoff = new();
}

/// <summary>
/// Per-item retry spacing for the sweeper's work with Wallet (returns, claim expiry): an item that failed waits 2, 4, 8 …
/// up to 300 s before it is tried again, so one item Wallet keeps refusing never holds up the others.
/// </summary>
public sealed class RetryBackoff
{
    private readonly Dictionary<string, (int Failures, DateTimeOffset Next)> _items = [];

    public bool IsDue(string key, DateTimeOffset now)
    {
        lock (_items)
        {
            return !_items.TryGetValue(key, out var item) || item.Next <= now;
        }
    }

    /// <summary>Records a failure; returns how many in a row (1: the first, worth reporting).</summary>
    public int Failed(string key, DateTimeOffset now)
    {
        lock (_items)
        {
            var failures = _items.TryGetValue(key, out var item) ? item.Failures + 1 : 1;
            _items[key] = (failures, now + TimeSpan.FromSeconds(Math.Min(300, Math.Pow(2, Math.Min(failures, 9)))));
            return failures;
        }
    }

    public void Done(string key)
    {
        lock (_items)
        {
            _items.Remove(key);
        }
    }
}
