using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Api;

/// <summary>Checkout sessions and billing portal sessions.</summary>
public static class CheckoutApi
{
    public static void MapCheckoutApi(this IEndpointRouteBuilder app)
    {
        app.MapStripe("POST", "/v1/checkout/sessions", CreateSession);
        app.MapStripe("GET", "/v1/checkout/sessions", ListSessions);
        app.MapStripe("GET", "/v1/checkout/sessions/{id}", c => c.Expand(c.Sim.Json.CheckoutSession(c.Sim.CheckoutSession(c.Route("id")))));
        app.MapStripe("POST", "/v1/checkout/sessions/{id}/expire", ExpireSession);
        app.MapStripe("GET", "/v1/checkout/sessions/{id}/line_items", ListLineItems);
        app.MapStripe("POST", "/v1/billing_portal/sessions", CreatePortalSession);
    }

    private static JsonObject CreateSession(StripeCall c)
    {
        var f = c.Form;
        var state = c.Sim.State;
        var mode = f.Required("mode");
        if (mode is not ("payment" or "subscription"))
        {
            throw StripeError.Invalid("mode", mode == "setup" ? "The simulator does not support `setup` mode." : $"Invalid mode: must be one of payment, setup, or subscription");
        }
        var customerId = f.Str("customer") is { Length: > 0 } cid ? c.Sim.Customer(cid, "customer").Id : null;
        var items = f.Items("line_items");
        if (items.Count == 0)
        {
            throw StripeError.Missing("line_items");
        }
        var lineItems = new List<LineItem>();
        for (var i = 0; i < items.Count; i++)
        {
            var param = $"line_items[{i}][price]";
            if (items[i].Has("price_data"))
            {
                throw StripeError.Invalid($"line_items[{i}][price_data]", "The simulator needs an existing price: pass line_items[][price].");
            }
            var price = c.Sim.Price(items[i].Required("price"), param);
            if (!price.Active)
            {
                throw StripeError.Invalid(param, "The price specified is inactive. This field only accepts active prices.");
            }
            if (mode == "payment" && price.IsRecurring)
            {
                throw StripeError.Invalid(param, "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.");
            }
            if (mode == "subscription" && !price.IsRecurring)
            {
                throw StripeError.Invalid(param, "You must provide at least one recurring price in `subscription` mode when using prices.");
            }
            var quantity = items[i].Long("quantity");
            if (price.IsMetered && quantity is not null)
            {
                throw Engine.BillingEngine.QuantityOnMetered($"line_items[{i}]");
            }
            if (quantity < 1)
            {
                throw StripeError.Invalid($"line_items[{i}][quantity]", "Quantity must be at least 1.");
            }
            lineItems.Add(new LineItem { Id = state.NewId("li_"), PriceId = price.Id, Quantity = price.IsMetered ? 0 : quantity ?? 1 });
        }
        if (mode == "subscription")
        {
            Engine.BillingEngine.ValidateItemSet([.. lineItems.Select(li => state.Prices[li.PriceId])], "line_items");
        }
        var currencies = lineItems.Select(li => state.Prices[li.PriceId].Currency).Distinct().ToList();
        if (currencies.Count > 1)
        {
            throw StripeError.Invalid("line_items", "All prices must be in the same currency.");
        }
        var now = state.Now;
        var expiresAt = f.Long("expires_at") ?? now + 24 * 3600;
        if (expiresAt < now + 30 * 60 - 60 || expiresAt > now + 24 * 3600 + 60)
        {
            throw StripeError.Invalid("expires_at", "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.");
        }
        var trialDays = f.Long("subscription_data", "trial_period_days");
        if (trialDays is not null && (mode != "subscription" || trialDays < 1 || trialDays > 730))
        {
            throw StripeError.Invalid("subscription_data[trial_period_days]", "Trial period days must be between 1 and 730 in subscription mode.");
        }
        var collection = f.Str("payment_method_collection") ?? "always";
        if (collection is not ("always" or "if_required") || (collection == "if_required" && mode != "subscription"))
        {
            throw StripeError.Invalid("payment_method_collection", "payment_method_collection must be always or if_required (if_required in subscription mode only).");
        }
        var missingPaymentMethod = f.Str("subscription_data", "trial_settings", "end_behavior", "missing_payment_method") ?? "create_invoice";
        if (missingPaymentMethod is not ("cancel" or "create_invoice" or "pause"))
        {
            throw StripeError.Invalid("subscription_data[trial_settings][end_behavior][missing_payment_method]", "Must be one of cancel, create_invoice or pause.");
        }
        var session = new CheckoutSession
        {
            Id = state.NewId("cs_test_a1", 56),
            Created = now,
            Mode = mode,
            CustomerId = customerId,
            CustomerEmail = f.Str("customer_email"),
            ClientReferenceId = f.Str("client_reference_id"),
            LineItems = lineItems,
            SuccessUrl = f.Str("success_url"),
            CancelUrl = f.Str("cancel_url"),
            Metadata = f.Map("metadata") ?? new(),
            SubscriptionMetadata = f.Map("subscription_data", "metadata") ?? new(),
            TrialPeriodDays = trialDays,
            PaymentMethodCollection = collection,
            MissingPaymentMethod = missingPaymentMethod,
            PaymentIntentMetadata = f.Map("payment_intent_data", "metadata") ?? new(),
            AllowPromotionCodes = f.Bool("allow_promotion_codes"),
            ExpiresAt = expiresAt,
            AmountTotal = lineItems.Sum(li => state.Prices[li.PriceId].AmountFor(li.Quantity)),
            Currency = currencies[0],
        };
        session.Url = $"{state.Options.PublicUrl.TrimEnd('/')}/checkout/{session.Id}";
        state.CheckoutSessions[session.Id] = session;
        return c.Expand(c.Sim.Json.CheckoutSession(session));
    }

    private static JsonObject ListSessions(StripeCall c)
    {
        var f = c.Form;
        var customer = f.Str("customer");
        var subscription = f.Str("subscription");
        var paymentIntent = f.Str("payment_intent");
        var status = f.Str("status");
        var items = c.Sim.State.CheckoutSessions.Values
            .Where(s => customer is null || s.CustomerId == customer)
            .Where(s => subscription is null || s.SubscriptionId == subscription)
            .Where(s => paymentIntent is null || s.PaymentIntentId == paymentIntent)
            .Where(s => status is null || s.Status == status)
            .OrderByDescending(s => c.Sim.State.Order(s.Id));
        return c.Sim.Page(items, s => s.Id, c.Sim.Json.CheckoutSession, f, "/v1/checkout/sessions");
    }

    private static JsonObject ExpireSession(StripeCall c)
    {
        var session = c.Sim.CheckoutSession(c.Route("id"));
        c.Sim.Engine.ExpireCheckout(session);
        return c.Expand(c.Sim.Json.CheckoutSession(session));
    }

    private static JsonObject ListLineItems(StripeCall c)
    {
        var session = c.Sim.CheckoutSession(c.Route("id"));
        return c.Sim.Page(session.LineItems, li => li.Id, li => c.Sim.Json.CheckoutLineItem(session, li), c.Form, $"/v1/checkout/sessions/{session.Id}/line_items");
    }

    private static JsonObject CreatePortalSession(StripeCall c)
    {
        var state = c.Sim.State;
        var customer = c.Sim.Customer(c.Form.Required("customer"), "customer");
        var id = state.NewId("bps_");
        var session = new PortalSession
        {
            Id = id,
            Created = state.Now,
            CustomerId = customer.Id,
            ReturnUrl = c.Form.Str("return_url"),
            Url = $"{state.Options.PublicUrl.TrimEnd('/')}/portal/{id}",
        };
        state.PortalSessions[id] = session;
        return c.Expand(c.Sim.Json.PortalSession(session));
    }
}
