using System.Text.Json;
using System.Text.Json.Nodes;
using Billing.StripeSimulator.Engine;
using Billing.StripeSimulator.Infrastructure;
using Billing.StripeSimulator.Persistence;
using Billing.StripeSimulator.Webhooks;

namespace Billing.StripeSimulator.Api;

/// <summary>The simulator's own controls under <c>/_sim</c>: clock, config, reset, events and deliveries, settling
/// delayed payments, changing a customer's card, disputing charges, meters and meter events.</summary>
public static class SimControlApi
{
    public static void MapSimControlApi(this IEndpointRouteBuilder app)
    {
        var sim = app.MapGroup("/_sim");
        sim.MapGet("/clock", (Sim s) => Json(s.Locked(() => new JsonObject { ["now"] = s.State.Now, ["wall"] = s.State.WallNow, ["offset"] = s.State.OffsetSeconds })));
        sim.MapPost("/clock/advance", async (HttpRequest request, Sim s) =>
        {
            var body = await ReadJson(request);
            var seconds = body["seconds"]?.GetValue<long>() ?? throw StripeError.Missing("seconds");
            if (seconds < 0)
            {
                throw StripeError.Invalid("seconds", "The clock only moves forward.");
            }
            return Json(s.Locked(() =>
            {
                s.State.Advance(seconds);
                var processed = s.Engine.ProcessDue(s.State.Now);
                s.State.Touch();
                return new JsonObject { ["now"] = s.State.Now, ["processed"] = processed };
            }));
        });
        sim.MapGet("/config", (Sim s) => Json(s.Locked(() => Config(s))));
        sim.MapPost("/config", async (HttpRequest request, Sim s) =>
        {
            var body = await ReadJson(request);
            return Json(s.Locked(() =>
            {
                s.State.ApplyConfig(body);
                return Config(s);
            }));
        });
        sim.MapPost("/reset", (Sim s, IServiceProvider services) =>
        {
            if (services.GetService<StateFileStore>() is { } store)
            {
                store.Reset(); // clears the state and, at once, the state file
            }
            else
            {
                s.Locked(() =>
                {
                    s.State.Reset();
                    return 0;
                });
            }
            return Json(new JsonObject { ["reset"] = true });
        });
        sim.MapGet("/events", (Sim s) => Json(s.Locked(() => new JsonObject
        {
            ["data"] = new JsonArray(s.State.Events.OrderByDescending(e => e.Sequence).Select(e => (JsonNode)new JsonObject
            {
                ["id"] = e.Id,
                ["type"] = e.Type,
                ["created"] = e.Created,
                ["delivered"] = e.Delivered,
                ["dropped"] = e.Dropped,
                ["attempts"] = new JsonArray(e.Attempts.Select(a => (JsonNode)new JsonObject { ["at"] = a.At, ["status"] = a.Status, ["error"] = a.Error }).ToArray()),
                ["event"] = s.Json.Event(e),
            }).ToArray()),
        })));
        sim.MapPost("/events/{id}/redeliver", async (string id, Sim s, WebhookDispatcher dispatcher, CancellationToken ct) =>
        {
            var evt = s.Locked(() => s.Event(id));
            var ok = await dispatcher.DeliverAsync(evt, scheduleRetry: false, ct);
            return Json(s.Locked(() => new JsonObject
            {
                ["id"] = evt.Id,
                ["delivered"] = ok,
                ["attempts"] = evt.Attempts.Count,
            }));
        });
        sim.MapPost("/checkout/{id}/settle", async (string id, HttpRequest request, Sim s) =>
        {
            var body = await ReadJson(request);
            var succeed = body["succeed"]?.GetValue<bool>() ?? true;
            return Json(s.Locked(() =>
            {
                var session = s.CheckoutSession(id, "id");
                s.Engine.SettleCheckout(session, succeed);
                return s.Json.CheckoutSession(session);
            }));
        });
        sim.MapPost("/customers/{id}/card", async (string id, HttpRequest request, Sim s) =>
        {
            var body = await ReadJson(request);
            var card = body["card"]?.GetValue<string>() ?? throw StripeError.Missing("card");
            return Json(s.Locked(() =>
            {
                var customer = s.Customer(id);
                s.Engine.SetCard(customer, card);
                return s.Json.Customer(customer);
            }));
        });
        sim.MapPost("/charges/{id}/dispute", async (string id, HttpRequest request, Sim s) =>
        {
            var form = await ReadFormOrJson(request);
            return Json(s.Locked(() =>
            {
                var charge = s.Charge(id, "id");
                var dispute = s.Engine.CreateDispute(charge, form.Long("amount"), form.Str("reason") is { Length: > 0 } reason ? reason : null);
                return s.Json.Dispute(dispute);
            }));
        });
        sim.MapPost("/refunds/{id}/fail", async (string id, HttpRequest request, Sim s) =>
        {
            var form = await ReadFormOrJson(request);
            var reason = form.Str("failure_reason") is { Length: > 0 } r ? r : null;
            return Json(s.Locked(() => s.Json.Refund(s.Engine.FailRefund(s.Refund(id, "id"), reason))));
        });
        sim.MapPost("/disputes/{id}/close", async (string id, HttpRequest request, Sim s) =>
        {
            var form = await ReadFormOrJson(request);
            var status = form.Required("status");
            return Json(s.Locked(() => s.Json.Dispute(s.Engine.CloseDispute(s.Dispute(id, "id"), status))));
        });
        sim.MapGet("/meters", (Sim s) => Json(s.Locked(() => new JsonObject
        {
            // Each meter with its events' count and what it aggregates per customer over all time.
            ["data"] = new JsonArray(s.State.Meters.Values.OrderByDescending(m => s.State.Order(m.Id)).Select(m =>
            {
                var meter = s.Json.Meter(m);
                var events = s.State.MeterEvents.Where(e => e.EventName == m.EventName).ToList();
                meter["event_count"] = events.Count;
                meter["usage_by_customer"] = new JsonObject(events.Select(e => e.CustomerId).Distinct().Select(customer =>
                    KeyValuePair.Create(customer, (JsonNode?)Rendering.StripeJson.DecimalString(s.Engine.UsageOfMeter(m, customer, long.MinValue, long.MaxValue)))));
                return (JsonNode)meter;
            }).ToArray()),
        })));
        sim.MapGet("/meter_events", (Sim s) => Json(s.Locked(() => new JsonObject
        {
            ["data"] = new JsonArray(s.State.MeterEvents.AsEnumerable().Reverse().Select(m => (JsonNode)new JsonObject
            {
                ["event_name"] = m.EventName,
                ["customer"] = m.CustomerId,
                ["value"] = m.Value,
                ["identifier"] = m.Identifier,
                ["timestamp"] = m.Timestamp,
                ["created"] = m.Created,
                ["rejected_with"] = m.RejectedWith,
            }).ToArray()),
        })));
        // Stripe accepted this event and rejects it afterwards, as its asynchronous validation does (an error report such as
        // meter_event_customer_not_found): from now on it counts in no meter's usage, summaries and invoices included.
        sim.MapPost("/meter_events/{identifier}/reject", async (string identifier, HttpRequest request, Sim s) =>
        {
            var form = await ReadFormOrJson(request);
            var code = form.Str("code") is { Length: > 0 } given ? given : "meter_event_customer_not_found";
            return Json(s.Locked(() =>
            {
                var meterEvent = s.State.MeterEvents.FirstOrDefault(e => e.Identifier == identifier)
                    ?? throw StripeError.NotFound("billing.meter_event", identifier, "identifier");
                meterEvent.RejectedWith = code;
                return new JsonObject { ["identifier"] = identifier, ["rejected_with"] = code };
            }));
        });
    }

    private static JsonObject Config(Sim s) => new()
    {
        ["publicUrl"] = s.State.Options.PublicUrl,
        ["webhookUrl"] = s.State.Options.WebhookUrl,
        ["deliverWebhooks"] = s.State.Options.DeliverWebhooks,
        ["stateFile"] = s.State.Options.StateFile,
        ["now"] = s.State.Now,
    };

    private static async Task<JsonObject> ReadJson(HttpRequest request)
    {
        using var reader = new StreamReader(request.Body);
        var text = await reader.ReadToEndAsync();
        if (string.IsNullOrWhiteSpace(text))
        {
            return new JsonObject();
        }
        try
        {
            return JsonNode.Parse(text) as JsonObject ?? throw StripeError.Invalid(null, "Expected a JSON object.");
        }
        catch (JsonException ex)
        {
            throw StripeError.Invalid(null, "Invalid JSON: " + ex.Message);
        }
    }

    /// <summary>The parameters of a request that may come as a form (<c>a=1&amp;b=x</c>) or as a JSON object of scalars,
    /// plus the query string, read like a Stripe form.</summary>
    private static async Task<Form> ReadFormOrJson(HttpRequest request)
    {
        if (request.ContentType?.Contains("json", StringComparison.OrdinalIgnoreCase) != true)
        {
            return await Form.ReadAsync(request);
        }
        var pairs = new List<string>();
        if (request.QueryString.HasValue)
        {
            pairs.Add(request.QueryString.Value!.TrimStart('?'));
        }
        foreach (var (key, value) in await ReadJson(request))
        {
            var text = value?.GetValueKind() switch
            {
                null or JsonValueKind.Null => null,
                JsonValueKind.String => value.GetValue<string>(),
                JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => value.ToJsonString(),
                _ => throw StripeError.Invalid(key, $"Invalid {key}: expected a string or a number."),
            };
            if (text is not null)
            {
                pairs.Add(Uri.EscapeDataString(key) + "=" + Uri.EscapeDataString(text));
            }
        }
        return Form.Parse(string.Join('&', pairs));
    }

    private static IResult Json(JsonObject obj) => Results.Text(obj.ToJsonString(Rendering.StripeJson.Wire), "application/json");
}
