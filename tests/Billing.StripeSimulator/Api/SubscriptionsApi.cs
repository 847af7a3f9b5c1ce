using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Engine;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Api;

public static class SubscriptionsApi
{
    public static void MapSubscriptionsApi(this IEndpointRouteBuilder app)
    {
        app.MapStripe("GET", "/v1/subscriptions", ListSubscriptions);
        app.MapStripe("GET", "/v1/subscriptions/{id}", c => c.Expand(c.Sim.Json.Subscription(c.Sim.Subscription(c.Route("id")))));
        app.MapStripe("POST", "/v1/subscriptions/{id}", UpdateSubscription);
        app.MapStripe("DELETE", "/v1/subscriptions/{id}", CancelSubscription);
        app.MapStripe("POST", "/v1/subscriptions/{id}/pause", PauseSubscription);
        app.MapStripe("POST", "/v1/subscriptions/{id}/resume", ResumeSubscription);
        app.MapStripe("GET", "/v1/subscription_items", ListItems);
    }

    private static JsonObject ListSubscriptions(StripeCall c)
    {
        var f = c.Form;
        var customer = f.Str("customer");
        var status = f.Str("status");
        var price = f.Str("price");
        var items = c.Sim.State.Subscriptions.Values
            .Where(s => customer is null || s.CustomerId == customer)
            .Where(s => price is null || s.Items.Any(i => i.PriceId == price))
            .Where(s => status switch
            {
                null => !s.IsEnded,
                "all" => true,
                "ended" => s.IsEnded,
                _ => s.Status == status,
            })
            .OrderByDescending(s => c.Sim.State.Order(s.Id));
        return c.Sim.Page(items, s => s.Id, c.Sim.Json.Subscription, f, "/v1/subscriptions");
    }

    private static JsonObject ListItems(StripeCall c)
    {
        var sub = c.Sim.Subscription(c.Form.Required("subscription"), "subscription");
        return c.Sim.Page(sub.Items, i => i.Id, i => c.Sim.Json.SubscriptionItem(sub, i), c.Form, $"/v1/subscription_items?subscription={sub.Id}");
    }

    public static JsonObject UpdateSubscription(StripeCall c)
    {
        var f = c.Form;
        var sub = c.Sim.Subscription(c.Route("id"));
        var engine = c.Sim.Engine;
        var before = c.Sim.Json.Subscription(sub);
        var items = f.Items("items");
        var changesSomething = items.Count > 0 || f.Has("cancel_at_period_end") || f.Has("billing_cycle_anchor");
        if (sub.IsEnded && changesSomething)
        {
            throw StripeError.Invalid(null, "A canceled subscription can only update its cancellation_details and metadata.");
        }
        var prorationBehavior = f.Str("proration_behavior") ?? "create_prorations";
        if (prorationBehavior is not ("create_prorations" or "always_invoice" or "none"))
        {
            throw StripeError.Invalid("proration_behavior", "Invalid proration_behavior: must be one of always_invoice, create_prorations, or none");
        }
        var anchor = f.Str("billing_cycle_anchor") ?? f.Str("billing_cycle_anchor", "type");
        if (anchor is not (null or "now" or "unchanged"))
        {
            throw StripeError.Invalid("billing_cycle_anchor", "Invalid billing_cycle_anchor: must be one of now or unchanged");
        }
        var paymentBehavior = f.Str("payment_behavior") ?? "allow_incomplete";
        if (f.Has("cancel_at_period_end") || f.Has("cancel_at"))
        {
            engine.RefuseCancelationChange(sub); // before anything else changes
        }

        var updates = ItemChanges(c, sub, items, "items");
        var trialEnd = TrialEnd(c, sub);
        if (trialEnd is { } endsAt && endsAt <= c.Sim.State.Now)
        {
            engine.EndTrialNow(sub, updates, paymentBehavior); // changes the items too, billed in the new period
        }
        else if (updates.Count > 0 || (anchor == "now" && items.Count == 0))
        {
            engine.ChangeItems(sub, updates, prorationBehavior, anchor, paymentBehavior, f.Long("proration_date"));
        }
        if (trialEnd is { } later && later > c.Sim.State.Now)
        {
            engine.MoveTrialEnd(sub, later);
        }
        engine.SyncCurrentPhase(sub);
        if (f.Bool("cancel_at_period_end") is { } cancel)
        {
            engine.SetCancelAtPeriodEnd(sub, cancel, before);
        }
        if (f.Has("cancellation_details", "comment"))
        {
            // Accepted for compatibility; the simulator keeps only the reason.
        }
        c.ApplyMetadata(sub.Metadata, "metadata");
        var after = c.Sim.Json.Subscription(sub);
        var diff = BillingEngine.Diff(before, after);
        if (diff.Count > 0)
        {
            c.Sim.State.Emit("customer.subscription.updated", after, diff);
        }
        return c.Expand(after);
    }

    /// <summary><c>trial_end</c> of an update (<c>now</c> or a unix time), which the simulator supports while the subscription is
    /// trialing only (Stripe can also start a new trial on an active one).</summary>
    private static long? TrialEnd(StripeCall c, Subscription sub)
    {
        if (c.Form.Str("trial_end") is not { } value)
        {
            return null;
        }
        if (sub.Status != "trialing")
        {
            throw StripeError.Invalid("trial_end", "The simulator supports trial_end on an update of a trialing subscription only.", null);
        }
        return value == "now" ? c.Sim.State.Now
            : long.TryParse(value, out var at) ? at
            : throw StripeError.Invalid("trial_end", $"Invalid trial_end: must be `now` or a unix timestamp, not `{value}`.");
    }

    /// <summary>
    /// <c>items[n]</c> of an update or a preview (<paramref name="param"/> names the list): <c>id</c> with <c>price</c> and/or
    /// <c>quantity</c> changes an item, <c>id</c> with <c>deleted=true</c> removes one, <c>price</c> alone adds one.
    /// </summary>
    public static List<ItemUpdate> ItemChanges(StripeCall c, Subscription sub, List<Form> items, string param)
    {
        var requests = new List<ItemRequest>();
        for (var i = 0; i < items.Count; i++)
        {
            var itemForm = items[i];
            var itemParam = $"{param}[{i}]";
            var item = itemForm.Str("id") is { Length: > 0 } itemId
                ? sub.Items.FirstOrDefault(x => x.Id == itemId) ?? throw StripeError.NotFound("subscription item", itemId, $"{itemParam}[id]")
                : null;
            var price = itemForm.Str("price") is { Length: > 0 } priceId ? c.Sim.Price(priceId, $"{itemParam}[price]") : null;
            requests.Add(new ItemRequest(itemParam, item, price, itemForm.Long("quantity"), itemForm.Bool("deleted") == true));
        }
        return c.Sim.Engine.ResolveItemChanges(sub, requests, param);
    }

    private static JsonObject CancelSubscription(StripeCall c)
    {
        var sub = c.Sim.Subscription(c.Route("id"));
        c.Sim.Engine.CancelNow(sub, c.Form.Bool("invoice_now") ?? false);
        return c.Expand(c.Sim.Json.Subscription(sub));
    }

    /// <summary>
    /// Stripe's pause (flexible billing mode, <c>type=subscription</c>): the subscription stops renewing and invoicing
    /// (<see cref="Engine.BillingEngine"/> renews only trialing, active and past-due ones) until it is resumed. The same
    /// status a trial that ended without a card can leave (modelled) or a failed renewal where Stripe is set to pause (not).
    /// </summary>
    private static JsonObject PauseSubscription(StripeCall c)
    {
        var sub = c.Sim.Subscription(c.Route("id"));
        switch (c.Form.Str("type"))
        {
            case null:
                throw StripeError.Invalid("type", "Missing required param: type.", "parameter_missing");
            case not "subscription":
                throw StripeError.Invalid("type", "Invalid type: must be one of subscription.");
        }
        if (sub.Status is not ("trialing" or "active" or "past_due" or "unpaid"))
        {
            throw StripeError.Invalid(null, $"A subscription with status {sub.Status} cannot be paused.", "subscription_not_pausable");
        }
        var before = c.Sim.Json.Subscription(sub);
        sub.Status = "paused";
        var after = c.Sim.Json.Subscription(sub);
        c.Sim.State.Emit("customer.subscription.paused", after, BillingEngine.Diff(before, after));
        return c.Expand(after);
    }

    private static JsonObject ResumeSubscription(StripeCall c)
    {
        var sub = c.Sim.Subscription(c.Route("id"));
        if (sub.Status != "paused")
        {
            throw StripeError.Invalid(null, "Only a paused subscription can be resumed.", "subscription_not_paused");
        }
        var before = c.Sim.Json.Subscription(sub);
        sub.Status = "active";
        var after = c.Sim.Json.Subscription(sub);
        c.Sim.State.Emit("customer.subscription.resumed", after, BillingEngine.Diff(before, after));
        return c.Expand(after);
    }
}
