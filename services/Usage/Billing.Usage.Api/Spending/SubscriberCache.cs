using System.Collections.Concurrent;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Core.Subscribers;

namespace Billing.Usage.Api.Spending;

/// <summary>A subscriber as last read, with the <c>usage_subjects.version</c> it was read at (-1: no row yet).</summary>
public sealed record VersionedSubscriber(SubscriberState State, long Version);

/// <summary>
/// Subscribers kept in memory for the hot path. Never trusted blindly: every spend carries the version it was decided
/// on and the database refuses it as stale when the subscriber has changed since (any replica, any consumer), after
/// which the entry is read again. So the cache saves a round trip per consume without ever deciding on an old plan.
/// </summary>
public sealed class SubscriberCache(SubscriberStore store)
{
    private const int MaxEntries = 200_000;
    private readonly ConcurrentDictionary<string, VersionedSubscriber> _entries = new(StringComparer.Ordinal);

    public async ValueTask<VersionedSubscriber> GetAsync(string userId, bool fresh, CancellationToken cancellationToken)
    {
        if (!fresh && _entries.TryGetValue(userId, out var known))
        {
            return known;
        }
        var read = await store.GetVersionedAsync(userId, cancellationToken);
        if (_entries.Count >= MaxEntries)
        {
            _entries.Clear();
        }
        _entries[userId] = read;
        return read;
    }

    /// <summary>Forgets a subscriber this replica changed (the version check would catch it anyway, one round trip later).</summary>
    public void Forget(string userId) => _entries.TryRemove(userId, out _);
}
