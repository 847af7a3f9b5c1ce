using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace Billing.StripeSimulator.Domain;

/// <summary>
/// Everything the simulator knows, guarded by one lock (<see cref="Gate"/>). Webhook delivery reads from
/// <see cref="Outbox"/> outside the lock. Whoever changes it calls <see cref="Touch"/> afterwards, so that a state
/// file (<c>SIM_STATE_FILE</c>) is rewritten soon.
/// </summary>
public sealed class SimState
{
    private const string IdAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    public object Gate { get; } = new();

    public Dictionary<string, Customer> Customers { get; } = new();
    public Dictionary<string, Product> Products { get; } = new();
    public Dictionary<string, Price> Prices { get; } = new();
    public Dictionary<string, CheckoutSession> CheckoutSessions { get; } = new();
    public Dictionary<string, PortalSession> PortalSessions { get; } = new();
    public Dictionary<string, Subscription> Subscriptions { get; } = new();
    public Dictionary<string, SubscriptionSchedule> SubscriptionSchedules { get; } = new();
    public Dictionary<string, Invoice> Invoices { get; } = new();
    public Dictionary<string, InvoicePayment> InvoicePayments { get; } = new();
    public Dictionary<string, PaymentIntent> PaymentIntents { get; } = new();
    public Dictionary<string, Charge> Charges { get; } = new();
    public Dictionary<string, Refund> Refunds { get; } = new();
    public Dictionary<string, Dispute> Disputes { get; } = new();
    public Dictionary<string, Meter> Meters { get; } = new();
    public List<MeterEvent> MeterEvents { get; } = [];
    public List<SimEvent> Events { get; } = [];
    public Dictionary<string, SimEvent> EventsById { get; } = new();

    /// <summary>Creation order of every object, so lists come back newest first like Stripe's.</summary>
    public Dictionary<string, long> CreationOrder { get; } = new();

    public Channel<SimEvent> Outbox { get; } = Channel.CreateUnbounded<SimEvent>();

    /// <summary>Answers remembered for <c>Idempotency-Key</c>s (used outside <see cref="Gate"/>).</summary>
    public IdempotencyCache Idempotency { get; } = new();

    /// <summary>The settings <c>POST /_sim/config</c> changed, by their JSON name; they outlive a restart with a state file.</summary>
    public JsonObject ConfigOverrides { get; } = new();

    /// <summary>Raised (outside or inside <see cref="Gate"/>) after every change; see <see cref="Touch"/>.</summary>
    public event Action? Changed;

    private long _version;
    private long _offsetSeconds;
    private long? _processingTime;
    private long _lastEventCreated;
    private long _sequence;
    private int _invoiceNumber;

    public required SimOptions Options { get; init; }

    /// <summary>Simulated now: wall-clock time plus whatever <c>/_sim/clock/advance</c> added.</summary>
    public long Now => _processingTime ?? DateTimeOffset.UtcNow.ToUnixTimeSeconds() + _offsetSeconds;

    public long WallNow => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public void Advance(long seconds) => _offsetSeconds += seconds;

    /// <summary>What <c>/_sim/clock/advance</c> added up to so far.</summary>
    public long OffsetSeconds => _offsetSeconds;

    /// <summary>Goes up on every <see cref="Touch"/>; a saver compares it with the version it last wrote.</summary>
    public long Version => Interlocked.Read(ref _version);

    /// <summary>Records that something changed (after the change).</summary>
    public void Touch()
    {
        Interlocked.Increment(ref _version);
        Changed?.Invoke();
    }

    /// <summary>Applies the settings in <paramref name="config"/> (<c>webhookUrl</c>, <c>deliverWebhooks</c>,
    /// <c>webhookSecret</c>) and remembers them as overrides. Expects <see cref="Gate"/> held.</summary>
    public void ApplyConfig(JsonObject config)
    {
        if (config.ContainsKey("webhookUrl"))
        {
            var url = config["webhookUrl"]?.GetValue<string>();
            Options.WebhookUrl = url;
            ConfigOverrides["webhookUrl"] = url;
        }
        if (config["deliverWebhooks"] is { } deliver)
        {
            Options.DeliverWebhooks = deliver.GetValue<bool>();
            ConfigOverrides["deliverWebhooks"] = Options.DeliverWebhooks;
        }
        if (config["webhookSecret"] is { } secret)
        {
            Options.WebhookSecret = secret.GetValue<string>();
            ConfigOverrides["webhookSecret"] = Options.WebhookSecret;
        }
    }

    /// <summary>The clock and the counters, for a state file.</summary>
    public SimCounters Counters
    {
        get => new(_offsetSeconds, _lastEventCreated, _sequence, _invoiceNumber);
        set
        {
            _offsetSeconds = value.OffsetSeconds;
            _lastEventCreated = value.LastEventCreated;
            _sequence = Math.Max(value.Sequence, CreationOrder.Count == 0 ? 0 : CreationOrder.Values.Max());
            _invoiceNumber = value.InvoiceNumber;
        }
    }
    /// <summary>Runs <paramref name="action"/> as if it happened at <paramref name="at"/> (a due time being processed).</summary>
    public void At(long at, Action action)
    {
        var previous = _processingTime;
        _processingTime = at;
        try
        {
            action();
        }
        finally
        {
            _processingTime = previous;
        }
    }

    public string NewId(string prefix, int length = 24)
    {
        var chars = new char[length];
        for (var i = 0; i < length; i++)
        {
            chars[i] = IdAlphabet[RandomNumberGenerator.GetInt32(IdAlphabet.Length)];
        }
        var id = prefix + new string(chars);
        CreationOrder[id] = ++_sequence;
        return id;
    }

    public void Register(string id) => CreationOrder[id] = ++_sequence;

    public long Order(string id) => CreationOrder.TryGetValue(id, out var order) ? order : 0;

    public string NextInvoiceNumber() => $"SIM-{++_invoiceNumber:D4}";

    public SimEvent Emit(string type, JsonObject obj, JsonObject? previousAttributes = null)
    {
        var created = Math.Max(Now, _lastEventCreated);
        _lastEventCreated = created;
        var evt = new SimEvent
        {
            Id = NewId("evt_"),
            Sequence = _sequence,
            Type = type,
            Created = created,
            Object = (JsonObject)obj.DeepClone(),
            PreviousAttributes = previousAttributes?.DeepClone().AsObject(),
        };
        Events.Add(evt);
        EventsById[evt.Id] = evt;
        Touch();
        if (Options.DeliverWebhooks && !string.IsNullOrEmpty(Options.WebhookUrl))
        {
            Outbox.Writer.TryWrite(evt);
        }
        else
        {
            evt.Dropped = true;
        }
        return evt;
    }

    public void Reset()
    {
        Customers.Clear();
        Products.Clear();
        Prices.Clear();
        CheckoutSessions.Clear();
        PortalSessions.Clear();
        Subscriptions.Clear();
        SubscriptionSchedules.Clear();
        Invoices.Clear();
        InvoicePayments.Clear();
        PaymentIntents.Clear();
        Charges.Clear();
        Refunds.Clear();
        Disputes.Clear();
        Meters.Clear();
        MeterEvents.Clear();
        Events.Clear();
        EventsById.Clear();
        CreationOrder.Clear();
        _offsetSeconds = 0;
        _processingTime = null;
        _lastEventCreated = 0;
        _invoiceNumber = 0;
        Idempotency.Clear();
        Touch();
    }
}

/// <summary>The simulated clock's offset and the counters behind event order and invoice numbers.</summary>
public sealed record SimCounters(long OffsetSeconds, long LastEventCreated, long Sequence, int InvoiceNumber);

/// <summary>Settings from the environment, changeable at run time through <c>POST /_sim/config</c>.</summary>
public sealed class SimOptions
{
    public required string PublicUrl { get; set; }
    public string? WebhookUrl { get; set; }
    public bool DeliverWebhooks { get; set; } = true;
    public required string WebhookSecret { get; set; }

    /// <summary>Where the state is kept across restarts (<c>SIM_STATE_FILE</c>); null = in memory only.</summary>
    public string? StateFile { get; set; }
}
