using System.Collections.Concurrent;

namespace Billing.StripeSimulator.Domain;

/// <summary>The answer first given to an <c>Idempotency-Key</c>; <see cref="Fingerprint"/> is method, path and body.</summary>
public sealed record StoredResponse(string Fingerprint, int Status, string Body);

/// <summary>
/// Answers remembered per API key and <c>Idempotency-Key</c>. Used outside <see cref="SimState.Gate"/> (the request
/// runs while its key's lock is held), hence the concurrent dictionaries.
/// </summary>
public sealed class IdempotencyCache
{
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _keyLocks = new();

    public ConcurrentDictionary<string, StoredResponse> Responses { get; } = new();

    public SemaphoreSlim KeyLock(string storeKey) => _keyLocks.GetOrAdd(storeKey, _ => new SemaphoreSlim(1, 1));

    public void Clear() => Responses.Clear();
}
