using System.Collections;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Billing.StripeSimulator.Domain;

namespace Billing.StripeSimulator.Persistence;

/// <summary>
/// The state file's content: <c>{"version":1, …}</c> with every object as the simulator holds it (camelCase
/// properties of the <see cref="Domain"/> classes), the events with their delivery attempts, the counters and the
/// clock offset, the remembered idempotency answers and the <c>/_sim/config</c> overrides. A file with another
/// <see cref="Version"/> is not read.
/// </summary>
public sealed class SavedState
{
    public const int CurrentVersion = 1;

    public int Version { get; set; }
    /// <summary>Wall-clock unix time of the save (informational).</summary>
    public long SavedAt { get; set; }
    public required SimCounters Counters { get; set; }
    public JsonObject Config { get; set; } = new();
    public Dictionary<string, long> CreationOrder { get; set; } = new();
    public List<Customer> Customers { get; set; } = [];
    public List<Product> Products { get; set; } = [];
    public List<Price> Prices { get; set; } = [];
    public List<CheckoutSession> CheckoutSessions { get; set; } = [];
    public List<PortalSession> PortalSessions { get; set; } = [];
    public List<Subscription> Subscriptions { get; set; } = [];
    public List<SubscriptionSchedule> SubscriptionSchedules { get; set; } = [];
    public List<Invoice> Invoices { get; set; } = [];
    public List<InvoicePayment> InvoicePayments { get; set; } = [];
    public List<PaymentIntent> PaymentIntents { get; set; } = [];
    public List<Charge> Charges { get; set; } = [];
    public List<Refund> Refunds { get; set; } = [];
    /// <summary>Disputes (absent in files written before disputes existed).</summary>
    public List<Dispute> Disputes { get; set; } = [];
    /// <summary>Billing meters (absent in files written before meters existed).</summary>
    public List<Meter> Meters { get; set; } = [];
    public List<MeterEvent> MeterEvents { get; set; } = [];
    /// <summary>In creation order; each with its delivery attempts and whether it was delivered or dropped.</summary>
    public List<SimEvent> Events { get; set; } = [];
    public List<SavedIdempotencyKey> IdempotencyKeys { get; set; } = [];

    /// <summary>camelCase, no computed properties (<c>Invoice.Total</c>, <c>Subscription.Item</c> …), get-only
    /// collections (<c>SimEvent.Attempts</c>, <c>Subscription.PendingProrations</c>) filled in place.</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        TypeInfoResolver = new DefaultJsonTypeInfoResolver { Modifiers = { StoredPropertiesOnly } },
    };

    /// <summary>Takes the state as it is; call with <see cref="SimState.Gate"/> held and serialize before releasing it.</summary>
    public static SavedState Capture(SimState state) => new()
    {
        Version = CurrentVersion,
        SavedAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        Counters = state.Counters,
        Config = state.ConfigOverrides,
        CreationOrder = state.CreationOrder,
        Customers = [.. state.Customers.Values],
        Products = [.. state.Products.Values],
        Prices = [.. state.Prices.Values],
        CheckoutSessions = [.. state.CheckoutSessions.Values],
        PortalSessions = [.. state.PortalSessions.Values],
        Subscriptions = [.. state.Subscriptions.Values],
        SubscriptionSchedules = [.. state.SubscriptionSchedules.Values],
        Invoices = [.. state.Invoices.Values],
        InvoicePayments = [.. state.InvoicePayments.Values],
        PaymentIntents = [.. state.PaymentIntents.Values],
        Charges = [.. state.Charges.Values],
        Refunds = [.. state.Refunds.Values],
        Disputes = [.. state.Disputes.Values],
        Meters = [.. state.Meters.Values],
        MeterEvents = state.MeterEvents,
        Events = state.Events,
        IdempotencyKeys = [.. state.Idempotency.Responses.ToArray().Select(kv => new SavedIdempotencyKey(kv.Key, kv.Value.Fingerprint, kv.Value.Status, kv.Value.Body))],
    };

    public static byte[] Serialize(SimState state) => JsonSerializer.SerializeToUtf8Bytes(Capture(state), Json);

    /// <summary>Reads a file's bytes; throws <see cref="InvalidDataException"/> (or <see cref="JsonException"/>) when
    /// they are not a state this version understands.</summary>
    public static SavedState Parse(byte[] bytes)
    {
        using var document = JsonDocument.Parse(bytes);
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException("the file is not a JSON object");
        }
        if (!document.RootElement.TryGetProperty("version", out var version) || version.ValueKind != JsonValueKind.Number)
        {
            throw new InvalidDataException("the file has no \"version\"");
        }
        if (!version.TryGetInt32(out var number) || number != CurrentVersion)
        {
            throw new InvalidDataException($"version {version.GetRawText()} is not supported (this simulator reads version {CurrentVersion})");
        }
        var saved = document.Deserialize<SavedState>(Json) ?? throw new InvalidDataException("the file is empty");
        saved.Validate();
        return saved;
    }

    /// <summary>Replaces everything in <paramref name="state"/> with this saved state. Call with <see cref="SimState.Gate"/> held.</summary>
    public void RestoreInto(SimState state)
    {
        state.Reset();
        foreach (var (id, order) in CreationOrder)
        {
            state.CreationOrder[id] = order;
        }
        Fill(state.Customers, Customers, x => x.Id);
        Fill(state.Products, Products, x => x.Id);
        Fill(state.Prices, Prices, x => x.Id);
        Fill(state.CheckoutSessions, CheckoutSessions, x => x.Id);
        Fill(state.PortalSessions, PortalSessions, x => x.Id);
        Fill(state.Subscriptions, Subscriptions, x => x.Id);
        Fill(state.SubscriptionSchedules, SubscriptionSchedules, x => x.Id);
        Fill(state.Invoices, Invoices, x => x.Id);
        Fill(state.InvoicePayments, InvoicePayments, x => x.Id);
        Fill(state.PaymentIntents, PaymentIntents, x => x.Id);
        Fill(state.Charges, Charges, x => x.Id);
        Fill(state.Refunds, Refunds, x => x.Id);
        Fill(state.Disputes, Disputes, x => x.Id);
        Fill(state.Meters, Meters, x => x.Id);
        state.MeterEvents.AddRange(MeterEvents);
        foreach (var evt in Events.OrderBy(e => e.Sequence))
        {
            state.Events.Add(evt);
            state.EventsById[evt.Id] = evt;
        }
        foreach (var key in IdempotencyKeys)
        {
            state.Idempotency.Responses[key.Key] = new StoredResponse(key.Fingerprint, key.Status, key.Body);
        }
        state.Counters = Counters;
        state.ApplyConfig(Config);
    }

    private void Validate()
    {
        if (Counters is null)
        {
            throw new InvalidDataException("the file has no \"counters\"");
        }
        if (Config.ContainsKey("webhookUrl") && Config["webhookUrl"] is { } url && url.GetValueKind() != JsonValueKind.String
            || Config["deliverWebhooks"] is { } deliver && deliver.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False)
            || Config["webhookSecret"] is { } secret && secret.GetValueKind() != JsonValueKind.String)
        {
            throw new InvalidDataException("\"config\" has a setting of the wrong type");
        }
        var meters = Meters.Select(m => m.Id).ToHashSet();
        if (Prices.FirstOrDefault(p => p.IsMetered && (p.MeterId is null || !meters.Contains(p.MeterId))) is { } metered)
        {
            throw new InvalidDataException($"price {metered.Id} names a meter the file does not hold");
        }
        var prices = Prices.Select(p => p.Id).ToHashSet();
        var customers = Customers.Select(c => c.Id).ToHashSet();
        foreach (var sub in Subscriptions)
        {
            if (sub.Items.Count(i => !i.Metered) != 1 || sub.Items.Any(i => !prices.Contains(i.PriceId)) || !customers.Contains(sub.CustomerId))
            {
                throw new InvalidDataException($"subscription {sub.Id} names an item, price or customer the file does not hold, or has no licensed item");
            }
        }
        var subscriptions = Subscriptions.Select(s => s.Id).ToHashSet();
        var schedules = SubscriptionSchedules.Select(s => s.Id).ToHashSet();
        foreach (var schedule in SubscriptionSchedules)
        {
            if (!customers.Contains(schedule.CustomerId)
                || schedule.SubscriptionId is { } subId && !subscriptions.Contains(subId)
                || schedule.Phases.Count == 0 || schedule.CurrentPhaseIndex < 0 || schedule.CurrentPhaseIndex >= schedule.Phases.Count
                || schedule.Phases.Any(p => p.Items.Count == 0 || p.Items.Any(i => !prices.Contains(i.PriceId))))
            {
                throw new InvalidDataException($"subscription schedule {schedule.Id} names a subscription, customer, phase or price the file does not hold");
            }
        }
        if (Subscriptions.FirstOrDefault(s => s.ScheduleId is { } id && !schedules.Contains(id)) is { } scheduled)
        {
            throw new InvalidDataException($"subscription {scheduled.Id} names a subscription schedule the file does not hold");
        }
        if (Invoices.FirstOrDefault(i => !customers.Contains(i.CustomerId)) is { } invoice)
        {
            throw new InvalidDataException($"invoice {invoice.Id} names a customer the file does not hold");
        }
        var charges = Charges.Select(c => c.Id).ToHashSet();
        if (Disputes.FirstOrDefault(d => !charges.Contains(d.ChargeId)) is { } dispute)
        {
            throw new InvalidDataException($"dispute {dispute.Id} names a charge the file does not hold");
        }
    }

    private static void Fill<T>(Dictionary<string, T> target, List<T> items, Func<T, string> id)
    {
        foreach (var item in items)
        {
            target[id(item)] = item;
        }
    }

    private static void StoredPropertiesOnly(JsonTypeInfo info)
    {
        if (info.Kind != JsonTypeInfoKind.Object || info.Type.Namespace != typeof(SimState).Namespace)
        {
            return;
        }
        for (var i = info.Properties.Count - 1; i >= 0; i--)
        {
            var property = info.Properties[i];
            if (property.AttributeProvider is not PropertyInfo clr || clr.SetMethod is not null)
            {
                continue;
            }
            if (clr.PropertyType != typeof(string) && typeof(IEnumerable).IsAssignableFrom(clr.PropertyType))
            {
                property.ObjectCreationHandling = JsonObjectCreationHandling.Populate;
            }
            else
            {
                info.Properties.RemoveAt(i);
            }
        }
    }
}

/// <summary>One remembered <c>Idempotency-Key</c> answer; <see cref="Key"/> is a hash of the API key, <c>|</c>, the key.</summary>
public sealed record SavedIdempotencyKey(string Key, string Fingerprint, int Status, string Body);
