using System.Globalization;
using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Api;

/// <summary>Billing meters (<c>/v1/billing/meters</c>) and the meter events they aggregate (<c>/v1/billing/meter_events</c>).</summary>
public static class MetersApi
{
    public static void MapMetersApi(this IEndpointRouteBuilder app)
    {
        app.MapStripe("POST", "/v1/billing/meters", CreateMeter);
        app.MapStripe("GET", "/v1/billing/meters", ListMeters);
        app.MapStripe("GET", "/v1/billing/meters/{id}", c => c.Expand(c.Sim.Json.Meter(c.Sim.Meter(c.Route("id")))));
        app.MapStripe("POST", "/v1/billing/meters/{id}", UpdateMeter);
        app.MapStripe("POST", "/v1/billing/meters/{id}/deactivate", c => SetStatus(c, active: false));
        app.MapStripe("POST", "/v1/billing/meters/{id}/reactivate", c => SetStatus(c, active: true));
        app.MapStripe("POST", "/v1/billing/meter_events", CreateMeterEvent);
        app.MapStripe("GET", "/v1/billing/meters/{id}/event_summaries", ListEventSummaries);
    }

    /// <summary>
    /// What a meter aggregated for one customer over [<c>start_time</c>, <c>end_time</c>): one summary, or one per hour or
    /// UTC day with <c>value_grouping_window</c>, newest first. Both times must be on minute boundaries (on the window's
    /// boundaries when grouping); the customer must exist. Stripe aggregates asynchronously; the simulator at once.
    /// </summary>
    private static JsonObject ListEventSummaries(StripeCall c)
    {
        var f = c.Form;
        var meter = c.Sim.Meter(c.Route("id"));
        var customer = c.Sim.Customer(f.Required("customer"), "customer").Id;
        var start = f.Long("start_time") ?? throw StripeError.Missing("start_time");
        var end = f.Long("end_time") ?? throw StripeError.Missing("end_time");
        var window = f.Str("value_grouping_window") switch
        {
            null or "" => (long?)null,
            "hour" => 3600L,
            "day" => 86400L,
            _ => throw StripeError.Invalid("value_grouping_window", "Invalid value_grouping_window: must be one of day or hour"),
        };
        foreach (var (name, at) in new[] { ("start_time", start), ("end_time", end) })
        {
            if (at % (window ?? 60) != 0)
            {
                throw StripeError.Invalid(name, $"{name} must be aligned with {(window is null ? "minute" : window == 3600 ? "hour" : "day")} boundaries.");
            }
        }
        if (end <= start)
        {
            throw StripeError.Invalid("end_time", "end_time must be after start_time.");
        }
        var step = window ?? end - start;
        var summaries = new List<(long From, long Until)>();
        for (var from = start; from < end; from += step)
        {
            summaries.Add((from, Math.Min(from + step, end)));
        }
        summaries.Reverse();
        string Id((long From, long Until) s) => $"mtrusg_{meter.Id}_{customer}_{s.From}_{s.Until}";
        return c.Sim.Page(summaries, Id, s => new JsonObject
        {
            ["id"] = Id(s),
            ["object"] = "billing.meter_event_summary",
            ["aggregated_value"] = (double)c.Sim.Engine.UsageOfMeter(meter, customer, s.From, s.Until),
            ["end_time"] = s.Until,
            ["livemode"] = false,
            ["meter"] = meter.Id,
            ["start_time"] = s.From,
        }, f, $"/v1/billing/meters/{meter.Id}/event_summaries");
    }

    private static JsonObject CreateMeter(StripeCall c)
    {
        var f = c.Form;
        var state = c.Sim.State;
        var displayName = f.Required("display_name");
        var eventName = f.Required("event_name");
        var formula = f.Required("default_aggregation", "formula");
        if (formula is not ("sum" or "count" or "last"))
        {
            throw StripeError.Invalid("default_aggregation[formula]", "Invalid default_aggregation[formula]: must be one of count, last, or sum");
        }
        if (f.Str("customer_mapping", "type") is { Length: > 0 } mappingType && mappingType != "by_id")
        {
            throw StripeError.Invalid("customer_mapping[type]", "Invalid customer_mapping[type]: must be by_id");
        }
        var window = f.Str("event_time_window") is { Length: > 0 } w ? w : null;
        if (window is not (null or "day" or "hour"))
        {
            throw StripeError.Invalid("event_time_window", "Invalid event_time_window: must be one of day or hour");
        }
        RefuseSecondActive(state, eventName, null);
        var now = state.Now;
        var meter = new Meter
        {
            Id = state.NewId("mtr_"),
            Created = now,
            Updated = now,
            DisplayName = displayName,
            EventName = eventName,
            Formula = formula,
            CustomerPayloadKey = f.Str("customer_mapping", "event_payload_key") is { Length: > 0 } customerKey ? customerKey : "stripe_customer_id",
            ValuePayloadKey = f.Str("value_settings", "event_payload_key") is { Length: > 0 } valueKey ? valueKey : "value",
            EventTimeWindow = window,
        };
        state.Meters[meter.Id] = meter;
        return c.Expand(c.Sim.Json.Meter(meter));
    }

    /// <summary>Only one active meter may have a given <c>event_name</c>.</summary>
    private static void RefuseSecondActive(SimState state, string eventName, string? except)
    {
        if (state.Meters.Values.FirstOrDefault(m => m.IsActive && m.EventName == eventName && m.Id != except) is { } holder)
        {
            throw StripeError.Invalid("event_name", $"An active billing meter (`{holder.Id}`) already has the event_name `{eventName}`.");
        }
    }

    private static JsonObject ListMeters(StripeCall c)
    {
        var status = c.Form.Str("status");
        if (status is not (null or "active" or "inactive"))
        {
            throw StripeError.Invalid("status", "Invalid status: must be one of active or inactive");
        }
        var items = c.Sim.State.Meters.Values
            .Where(m => status is null || m.Status == status)
            .OrderByDescending(m => c.Sim.State.Order(m.Id));
        return c.Sim.Page(items, m => m.Id, c.Sim.Json.Meter, c.Form, "/v1/billing/meters");
    }

    private static JsonObject UpdateMeter(StripeCall c)
    {
        var meter = c.Sim.Meter(c.Route("id"));
        if (c.Form.Str("display_name") is { Length: > 0 } displayName)
        {
            meter.DisplayName = displayName;
            meter.Updated = c.Sim.State.Now;
        }
        return c.Expand(c.Sim.Json.Meter(meter));
    }

    private static JsonObject SetStatus(StripeCall c, bool active)
    {
        var meter = c.Sim.Meter(c.Route("id"));
        if (meter.IsActive == active)
        {
            throw StripeError.Invalid(null, $"The billing meter `{meter.Id}` is already {meter.Status}.");
        }
        if (active)
        {
            RefuseSecondActive(c.Sim.State, meter.EventName, meter.Id);
        }
        var now = c.Sim.State.Now;
        meter.Status = active ? "active" : "inactive";
        meter.DeactivatedAt = active ? null : now;
        meter.Updated = now;
        return c.Expand(c.Sim.Json.Meter(meter));
    }

    /// <summary>
    /// Records a meter event. The customer and the value are read from the payload keys of the meter with that
    /// <c>event_name</c> (the active one, else the latest; <c>stripe_customer_id</c> and <c>value</c> without one). An
    /// event is counted once per <c>identifier</c>.
    /// </summary>
    private static JsonObject CreateMeterEvent(StripeCall c)
    {
        var f = c.Form;
        var state = c.Sim.State;
        var eventName = f.Required("event_name");
        var payload = f.Map("payload") ?? throw StripeError.Missing("payload");
        var meter = state.Meters.Values.Where(m => m.EventName == eventName)
            .OrderByDescending(m => m.IsActive).ThenByDescending(m => state.Order(m.Id)).FirstOrDefault();
        var customerKey = meter?.CustomerPayloadKey ?? "stripe_customer_id";
        var valueKey = meter?.ValuePayloadKey ?? "value";
        if (!payload.TryGetValue(customerKey, out var customerId) || customerId.Length == 0)
        {
            throw StripeError.Missing($"payload[{customerKey}]");
        }
        if (!payload.TryGetValue(valueKey, out var value) || !decimal.TryParse(value, NumberStyles.Number, CultureInfo.InvariantCulture, out _))
        {
            throw StripeError.Invalid($"payload[{valueKey}]", $"The `{valueKey}` in the payload must be a number.");
        }
        var identifier = f.Str("identifier") is { Length: > 0 } given ? given : Guid.NewGuid().ToString();
        if (state.MeterEvents.Any(m => m.Identifier == identifier))
        {
            throw StripeError.Invalid("identifier", $"An event already exists with identifier {identifier}.", null);
        }
        var meterEvent = new MeterEvent
        {
            Identifier = identifier,
            EventName = eventName,
            CustomerId = customerId,
            Value = value,
            Timestamp = f.Long("timestamp") ?? state.Now,
            Created = state.Now,
            Payload = payload,
        };
        state.MeterEvents.Add(meterEvent);
        return c.Sim.Json.MeterEvent(meterEvent);
    }
}
