namespace Billing.ServiceDefaults;

/// <summary>
/// One at a time per key (a user) within this process, each waiting without holding anything else. Keys do not share a
/// queue (a striped one made a user wait behind another who happened to share the stripe), and a key's entry lives only
/// while someone holds or waits for it.
/// </summary>
public sealed class PerKeyQueue
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    /// <summary>Waits up to <paramref name="timeout"/> for the key's turn: null when it did not come; dispose the turn to pass it on.</summary>
    public async Task<IDisposable?> EnterAsync(string key, TimeSpan timeout, CancellationToken ct)
    {
        Entry entry;
        lock (_entries)
        {
            if (!_entries.TryGetValue(key, out entry!))
            {
                _entries[key] = entry = new Entry();
            }
            entry.Users++;
        }
        var entered = false;
        try
        {
            entered = await entry.Gate.WaitAsync(timeout, ct);
        }
        finally
        {
            if (!entered)
            {
                Leave(key, entry);
            }
        }
        return entered ? new Turn(this, key, entry) : null;
    }

    /// <summary>Keys held or waited for now (0 when idle).</summary>
    public int Count
    {
        get
        {
            lock (_entries)
            {
                return _entries.Count;
            }
        }
    }

    private void Leave(string key, Entry entry)
    {
        lock (_entries)
        {
            if (--entry.Users == 0)
            {
                _entries.Remove(key);
            }
        }
    }

    private sealed class Entry
    {
        public readonly SemaphoreSlim Gate = new(1, 1);
        public int Users;
    }

    private sealed class Turn(PerKeyQueue queue, string key, Entry entry) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0)
            {
                entry.Gate.Release();
                queue.Leave(key, entry);
            }
        }
    }
}
