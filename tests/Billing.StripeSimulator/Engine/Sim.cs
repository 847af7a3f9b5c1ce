using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Infrastructure;
using Billing.StripeSimulator.Rendering;

namespace Billing.StripeSimulator.Engine;

/// <summary>The state, its renderer and its engine, with lookups that answer Stripe's 404s.</summary>
public sealed class Sim
{
    public Sim(SimOptions options)
    {
        State = new SimState { Options = options };
        Json = new StripeJson(State);
        Engine = new BillingEngine(State, Json);
    }

    public SimState State { get; }
    public StripeJson Json { get; }
    public BillingEngine Engine { get; }

    public T Locked<T>(Func<T> action)
    {
        lock (State.Gate)
        {
            return action();
        }
    }

    public Customer Customer(string id, string param = "id") =>
        State.Customers.TryGetValue(id, out var c) ? c : throw StripeError.NotFound("customer", id, param);

    public Product Product(string id, string param = "id") =>
        State.Products.TryGetValue(id, out var p) ? p : throw StripeError.NotFound("product", id, param);

    public Price Price(string id, string param = "id") =>
        State.Prices.TryGetValue(id, out var p) ? p : throw StripeError.NotFound("price", id, param);

    public CheckoutSession CheckoutSession(string id, string param = "session") =>
        State.CheckoutSessions.TryGetValue(id, out var s) ? s : throw StripeError.NotFound("checkout.session", id, param);

    public Subscription Subscription(string id, string param = "id") =>
        State.Subscriptions.TryGetValue(id, out var s) ? s : throw StripeError.NotFound("subscription", id, param);

    public SubscriptionSchedule SubscriptionSchedule(string id, string param = "schedule") =>
        State.SubscriptionSchedules.TryGetValue(id, out var s) ? s : throw StripeError.NotFound("subscription schedule", id, param);

    public Invoice Invoice(string id, string param = "invoice") =>
        State.Invoices.TryGetValue(id, out var i) ? i : throw StripeError.NotFound("invoice", id, param);

    public PaymentIntent PaymentIntent(string id, string param = "intent") =>
        State.PaymentIntents.TryGetValue(id, out var p) ? p : throw StripeError.NotFound("payment_intent", id, param);

    public Charge Charge(string id, string param = "charge") =>
        State.Charges.TryGetValue(id, out var c) ? c : throw StripeError.NotFound("charge", id, param);

    public Refund Refund(string id, string param = "refund") =>
        State.Refunds.TryGetValue(id, out var r) ? r : throw StripeError.NotFound("refund", id, param);

    public Dispute Dispute(string id, string param = "dispute") =>
        State.Disputes.TryGetValue(id, out var d) ? d : throw StripeError.NotFound("dispute", id, param);

    public Meter Meter(string id, string param = "id") =>
        State.Meters.TryGetValue(id, out var m) ? m : throw StripeError.NotFound("billing.meter", id, param);

    public SimEvent Event(string id, string param = "id") =>
        State.EventsById.TryGetValue(id, out var e) ? e : throw StripeError.NotFound("event", id, param);

    /// <summary>A page of a newest-first list with Stripe's <c>limit</c>, <c>starting_after</c>, <c>ending_before</c>.</summary>
    public JsonObject Page<T>(IEnumerable<T> newestFirst, Func<T, string> id, Func<T, JsonObject> render, Form form, string url)
    {
        var limit = (int)(form.Long("limit") ?? 10);
        if (limit is < 1 or > 100)
        {
            throw StripeError.Invalid("limit", "Invalid integer: limit must be between 1 and 100");
        }
        var items = newestFirst.ToList();
        var startingAfter = form.Str("starting_after");
        var endingBefore = form.Str("ending_before");
        List<T> page;
        bool hasMore;
        if (!string.IsNullOrEmpty(startingAfter))
        {
            var index = items.FindIndex(i => id(i) == startingAfter);
            var rest = index < 0 ? [] : items.Skip(index + 1).ToList();
            page = rest.Take(limit).ToList();
            hasMore = rest.Count > limit;
        }
        else if (!string.IsNullOrEmpty(endingBefore))
        {
            var index = items.FindIndex(i => id(i) == endingBefore);
            var before = index < 0 ? [] : items.Take(index).ToList();
            page = before.Skip(Math.Max(0, before.Count - limit)).ToList();
            hasMore = before.Count > limit;
        }
        else
        {
            page = items.Take(limit).ToList();
            hasMore = items.Count > limit;
        }
        var list = StripeJson.List(url, page.Select(i => (JsonNode)render(i)), hasMore);
        return Json.Expand(list, form.List("expand"));
    }
}
