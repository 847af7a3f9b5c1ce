using System.Diagnostics;
using System.Globalization;
using System.Threading.Channels;
using Billing.StripeSimulator.Engine;
using Billing.StripeSimulator.Webhooks;

namespace Billing.StripeSimulator.Persistence;

/// <summary>
/// Keeps the simulator's state in <c>SIM_STATE_FILE</c> so that it outlives a restart: <see cref="Load"/> at start,
/// <see cref="SaveIfChanged"/> (write a temporary file next to it, then rename over it) after changes and at shutdown.
/// A file that cannot be read is moved aside to <c>&lt;name&gt;.broken-&lt;timestamp&gt;</c> and the simulator starts empty.
/// </summary>
public sealed class StateFileStore
{
    private readonly Sim _sim;
    private readonly ILogger<StateFileStore> _logger;
    private readonly object _fileLock = new();
    private readonly Channel<bool> _changes = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private long _savedVersion = -1;
    private bool _failing;

    public StateFileStore(Sim sim, string path, ILogger<StateFileStore> logger)
    {
        _sim = sim;
        _logger = logger;
        FilePath = Path.GetFullPath(path);
        sim.State.Changed += () => _changes.Writer.TryWrite(true);
    }

    public string FilePath { get; }

    /// <summary>Signals that the state changed since the last signal was read.</summary>
    public ChannelReader<bool> Changes => _changes.Reader;

    /// <summary>Restores the state from the file, if there is one, and queues the webhook deliveries that were pending.</summary>
    public void Load()
    {
        lock (_fileLock)
        {
            RemoveStaleTemporaryFiles();
            if (!File.Exists(FilePath))
            {
                _logger.LogInformation("Simulator state file {Path} does not exist yet; starting empty", FilePath);
                _savedVersion = _sim.State.Version;
                return;
            }
            var state = _sim.State;
            var options = state.Options;
            var (webhookUrl, deliver, secret) = (options.WebhookUrl, options.DeliverWebhooks, options.WebhookSecret);
            try
            {
                var saved = SavedState.Parse(File.ReadAllBytes(FilePath));
                int pending;
                lock (state.Gate)
                {
                    saved.RestoreInto(state);
                    var queued = state.Events.Where(e => !e.Delivered && !e.Dropped && e.Attempts.Count < WebhookDispatcher.MaxAttempts).ToList();
                    foreach (var evt in queued)
                    {
                        state.Outbox.Writer.TryWrite(evt);
                    }
                    pending = queued.Count;
                    _savedVersion = state.Version;
                }
                _logger.LogInformation(
                    "Restored simulator state from {Path} (saved {SavedAt:u}): {Customers} customers, {Subscriptions} subscriptions, {Schedules} subscription schedules, {Invoices} invoices, {Events} events, {Pending} webhook deliveries to resume, clock offset {Offset} s, config overrides {Config}",
                    FilePath, DateTimeOffset.FromUnixTimeSeconds(saved.SavedAt), saved.Customers.Count, saved.Subscriptions.Count, saved.SubscriptionSchedules.Count, saved.Invoices.Count,
                    saved.Events.Count, pending, saved.Counters.OffsetSeconds, saved.Config.ToJsonString());
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                lock (state.Gate)
                {
                    state.Reset();
                    state.ConfigOverrides.Clear();
                    (options.WebhookUrl, options.DeliverWebhooks, options.WebhookSecret) = (webhookUrl, deliver, secret);
                    _savedVersion = state.Version;
                }
                var aside = MoveAside();
                _logger.LogWarning(
                    "Simulator state file {Path} could not be read ({Reason}); {Aside}. Starting with an empty simulator.",
                    FilePath, ex is InvalidDataException ? ex.Message : ex.GetType().Name + ": " + ex.Message,
                    aside is null ? "it could not be moved aside and will be overwritten" : "moved it to " + aside);
            }
        }
    }

    /// <summary>Writes the state if it changed since the last write; never throws (a failure is logged and retried on the next change).</summary>
    public void SaveIfChanged()
    {
        lock (_fileLock)
        {
            byte[] bytes;
            long version;
            try
            {
                lock (_sim.State.Gate)
                {
                    version = _sim.State.Version;
                    if (version == _savedVersion)
                    {
                        return;
                    }
                    bytes = SavedState.Serialize(_sim.State);
                }
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Failed(ex);
                return;
            }
            Write(bytes, version);
        }
    }

    /// <summary><c>POST /_sim/reset</c>: clears the state and, at once, the file (it then holds the empty state).</summary>
    public void Reset()
    {
        lock (_fileLock)
        {
            lock (_sim.State.Gate)
            {
                _sim.State.Reset();
            }
            SaveIfChanged();
        }
    }

    private void Write(byte[] bytes, long version)
    {
        var directory = Path.GetDirectoryName(FilePath)!;
        var temporary = TemporaryPath();
        try
        {
            var started = Stopwatch.GetTimestamp();
            Directory.CreateDirectory(directory);
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, FilePath, overwrite: true);
            _savedVersion = version;
            if (_failing)
            {
                _failing = false;
                _logger.LogInformation("Simulator state saved to {Path} again", FilePath);
            }
            _logger.LogDebug("Saved simulator state to {Path}: {Bytes} bytes in {Elapsed} ms", FilePath, bytes.Length, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            TryDelete(temporary);
            Failed(ex);
        }
    }

    private void Failed(Exception ex)
    {
        if (!_failing)
        {
            _failing = true;
            _logger.LogWarning(ex, "Could not save simulator state to {Path}; will try again after the next change", FilePath);
        }
    }

    private string TemporaryPath() =>
        Path.Combine(Path.GetDirectoryName(FilePath)!, $".{Path.GetFileName(FilePath)}.{Environment.ProcessId}.tmp");

    private string? MoveAside()
    {
        var stamp = DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        var aside = $"{FilePath}.broken-{stamp}";
        for (var n = 2; File.Exists(aside); n++)
        {
            aside = $"{FilePath}.broken-{stamp}-{n}";
        }
        try
        {
            File.Move(FilePath, aside);
            return aside;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning(ex, "Could not move {Path} aside", FilePath);
            return null;
        }
    }

    private void RemoveStaleTemporaryFiles()
    {
        var directory = Path.GetDirectoryName(FilePath)!;
        if (!Directory.Exists(directory))
        {
            return;
        }
        foreach (var stale in Directory.EnumerateFiles(directory, $".{Path.GetFileName(FilePath)}.*.tmp"))
        {
            TryDelete(stale);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>Saves the state soon after changes (at most every <see cref="MinInterval"/>) and once more on shutdown.</summary>
internal sealed class StatePersister(StateFileStore store, IHostApplicationLifetime lifetime) : BackgroundService
{
    public static readonly TimeSpan MinInterval = TimeSpan.FromMilliseconds(500);

    /// <summary>Lets the changes of one burst of requests land in one write.</summary>
    private static readonly TimeSpan Coalesce = TimeSpan.FromMilliseconds(50);

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStopping.Register(store.SaveIfChanged);
        return base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var lastSave = 0L; // long ago
        try
        {
            while (await store.Changes.WaitToReadAsync(stoppingToken))
            {
                var wait = MinInterval - Stopwatch.GetElapsedTime(lastSave);
                await Task.Delay(wait > Coalesce ? wait : Coalesce, stoppingToken);
                store.Changes.TryRead(out _);
                store.SaveIfChanged();
                lastSave = Stopwatch.GetTimestamp();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        store.SaveIfChanged(); // after the webhook dispatcher and the clock stopped (hosted services stop in reverse order)
    }
}
