using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Api;

public static class InvoicesApi
{
    public static void MapInvoicesApi(this IEndpointRouteBuilder app)
    {
        app.MapStripe("GET", "/v1/invoices", ListInvoices);
        app.MapStripe("POST", "/v1/invoices/create_preview", CreatePreview);
        app.MapStripe("GET", "/v1/invoices/{id}", c => c.Expand(c.Sim.Json.Invoice(c.Sim.Invoice(c.Route("id"), "id"))));
        app.MapStripe("GET", "/v1/invoices/{id}/lines", ListLines);
        app.MapStripe("POST", "/v1/invoices/{id}/pay", PayInvoice);
        app.MapStripe("GET", "/v1/invoice_payments", ListInvoicePayments);
        app.MapStripe("GET", "/v1/invoice_payments/{id}", c =>
            c.Sim.State.InvoicePayments.TryGetValue(c.Route("id"), out var p)
                ? c.Expand(c.Sim.Json.InvoicePayment(p))
                : throw StripeError.NotFound("invoice_payment", c.Route("id")));
    }

    private static JsonObject ListInvoices(StripeCall c)
    {
        var f = c.Form;
        var customer = f.Str("customer");
        var subscription = f.Str("subscription");
        var status = f.Str("status");
        var items = c.Sim.State.Invoices.Values
            .Where(i => customer is null || i.CustomerId == customer)
            .Where(i => subscription is null || i.SubscriptionId == subscription)
            .Where(i => status is null || i.Status == status)
            .OrderByDescending(i => c.Sim.State.Order(i.Id));
        return c.Sim.Page(items, i => i.Id, c.Sim.Json.Invoice, f, "/v1/invoices");
    }

    private static JsonObject ListLines(StripeCall c)
    {
        var invoice = c.Sim.Invoice(c.Route("id"));
        return c.Sim.Page(invoice.Lines, l => l.Id, l => c.Sim.Json.InvoiceLine(invoice, l), c.Form, $"/v1/invoices/{invoice.Id}/lines");
    }

    private static JsonObject PayInvoice(StripeCall c)
    {
        var invoice = c.Sim.Invoice(c.Route("id"));
        if (invoice.Status != "open")
        {
            throw StripeError.Invalid(null, "Invoice is already paid.", "invoice_not_open");
        }
        var (paid, outcome) = c.Sim.Engine.AttemptInvoicePayment(invoice, offSession: true, emitSubscriptionUpdate: true);
        if (!paid)
        {
            throw StripeError.Card(outcome.Code!, outcome.Message!, outcome.DeclineCode);
        }
        return c.Expand(c.Sim.Json.Invoice(invoice));
    }

    private static JsonObject CreatePreview(StripeCall c)
    {
        var f = c.Form;
        Subscription sub;
        if (f.Str("subscription") is { Length: > 0 } subId)
        {
            sub = c.Sim.Subscription(subId, "subscription");
        }
        else if (f.Str("customer") is { Length: > 0 } customerId)
        {
            c.Sim.Customer(customerId, "customer");
            sub = c.Sim.State.Subscriptions.Values.Where(s => s.CustomerId == customerId && !s.IsEnded).OrderByDescending(s => c.Sim.State.Order(s.Id)).FirstOrDefault()
                ?? throw StripeError.Invalid("customer", $"No upcoming invoices for customer: {customerId}", "invoice_upcoming_none");
        }
        else
        {
            throw StripeError.Invalid(null, "Must provide `customer` or `subscription`.", "parameter_missing");
        }
        if (sub.IsEnded)
        {
            throw StripeError.Invalid("subscription", $"No upcoming invoices for subscription: {sub.Id}", "invoice_upcoming_none");
        }
        var details = f.Sub("subscription_details") ?? Form.Empty;
        var updates = SubscriptionsApi.ItemChanges(c, sub, details.Items("items"), "subscription_details[items]");
        var behavior = details.Str("proration_behavior") ?? "create_prorations";
        var invoice = c.Sim.Engine.Preview(sub, updates, behavior, details.Str("billing_cycle_anchor") ?? details.Str("billing_cycle_anchor", "type"), details.Long("proration_date"));
        return c.Expand(c.Sim.Json.Invoice(invoice));
    }

    private static JsonObject ListInvoicePayments(StripeCall c)
    {
        var f = c.Form;
        var invoice = f.Str("invoice");
        var paymentIntent = f.Str("payment", "payment_intent");
        var status = f.Str("status");
        var items = c.Sim.State.InvoicePayments.Values
            .Where(p => invoice is null || p.InvoiceId == invoice)
            .Where(p => paymentIntent is null || p.PaymentIntentId == paymentIntent)
            .Where(p => status is null || p.Status == status)
            .OrderByDescending(p => c.Sim.State.Order(p.Id));
        return c.Sim.Page(items, p => p.Id, c.Sim.Json.InvoicePayment, f, "/v1/invoice_payments");
    }
}
