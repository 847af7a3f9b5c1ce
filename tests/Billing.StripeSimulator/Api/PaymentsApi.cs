using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Api;

/// <summary>Payment intents, charges, refunds and disputes.</summary>
public static class PaymentsApi
{
    public static void MapPaymentsApi(this IEndpointRouteBuilder app)
    {
        app.MapStripe("GET", "/v1/payment_intents", c =>
        {
            var customer = c.Form.Str("customer");
            var items = c.Sim.State.PaymentIntents.Values.Where(p => customer is null || p.CustomerId == customer).OrderByDescending(p => c.Sim.State.Order(p.Id));
            return c.Sim.Page(items, p => p.Id, c.Sim.Json.PaymentIntent, c.Form, "/v1/payment_intents");
        });
        app.MapStripe("GET", "/v1/payment_intents/{id}", c => c.Expand(c.Sim.Json.PaymentIntent(c.Sim.PaymentIntent(c.Route("id")))));
        app.MapStripe("GET", "/v1/charges", c =>
        {
            var customer = c.Form.Str("customer");
            var paymentIntent = c.Form.Str("payment_intent");
            var items = c.Sim.State.Charges.Values
                .Where(x => customer is null || x.CustomerId == customer)
                .Where(x => paymentIntent is null || x.PaymentIntentId == paymentIntent)
                .OrderByDescending(x => c.Sim.State.Order(x.Id));
            return c.Sim.Page(items, x => x.Id, c.Sim.Json.Charge, c.Form, "/v1/charges");
        });
        app.MapStripe("GET", "/v1/charges/{id}", c => c.Expand(c.Sim.Json.Charge(c.Sim.Charge(c.Route("id")))));
        app.MapStripe("POST", "/v1/refunds", CreateRefund);
        app.MapStripe("GET", "/v1/refunds", c =>
        {
            var charge = c.Form.Str("charge");
            var paymentIntent = c.Form.Str("payment_intent");
            var items = c.Sim.State.Refunds.Values
                .Where(r => charge is null || r.ChargeId == charge)
                .Where(r => paymentIntent is null || r.PaymentIntentId == paymentIntent)
                .OrderByDescending(r => c.Sim.State.Order(r.Id));
            return c.Sim.Page(items, r => r.Id, c.Sim.Json.Refund, c.Form, "/v1/refunds");
        });
        app.MapStripe("GET", "/v1/refunds/{id}", c => c.Expand(c.Sim.Json.Refund(c.Sim.Refund(c.Route("id")))));
        app.MapStripe("GET", "/v1/disputes", c =>
        {
            var charge = c.Form.Str("charge");
            var paymentIntent = c.Form.Str("payment_intent");
            var items = c.Sim.State.Disputes.Values
                .Where(d => charge is null || d.ChargeId == charge)
                .Where(d => paymentIntent is null || d.PaymentIntentId == paymentIntent)
                .OrderByDescending(d => c.Sim.State.Order(d.Id));
            return c.Sim.Page(items, d => d.Id, c.Sim.Json.Dispute, c.Form, "/v1/disputes");
        });
        app.MapStripe("GET", "/v1/disputes/{id}", c => c.Expand(c.Sim.Json.Dispute(c.Sim.Dispute(c.Route("id")))));
    }

    private static JsonObject CreateRefund(StripeCall c)
    {
        var f = c.Form;
        Charge charge;
        if (f.Str("charge") is { Length: > 0 } chargeId)
        {
            charge = c.Sim.Charge(chargeId, "charge");
        }
        else if (f.Str("payment_intent") is { Length: > 0 } piId)
        {
            var pi = c.Sim.PaymentIntent(piId, "payment_intent");
            if (pi.Status != "succeeded" || pi.LatestChargeId is null)
            {
                throw StripeError.Invalid("payment_intent", $"This PaymentIntent ({pi.Id}) does not have a successful charge to refund.", "charge_not_refundable");
            }
            charge = c.Sim.State.Charges[pi.LatestChargeId];
        }
        else
        {
            throw StripeError.Invalid(null, "One of the following params should be provided for this request: payment_intent or charge.", "parameter_missing");
        }
        var refund = c.Sim.Engine.CreateRefund(charge, f.Long("amount"), f.Str("reason"), f.Map("metadata"));
        return c.Expand(c.Sim.Json.Refund(refund));
    }
}
