using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Engine;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Pages;

/// <summary>The hosted checkout page, the customer portal page, and plain invoice and receipt pages.</summary>
public static class HostedPages
{
    public static void MapHostedPages(this IEndpointRouteBuilder app)
    {
        app.MapGet("/checkout/{id}", (string id, Sim sim) => sim.Locked(() => CheckoutPage(sim, id, null, 200)));
        app.MapPost("/checkout/{id}/pay", async (string id, HttpRequest request, Sim sim) =>
        {
            var form = await request.ReadFormAsync();
            var method = form["method"].ToString();
            var card = method == "bank_debit" ? BillingEngine.BankDebit : form["card"].ToString();
            return sim.Locked(() => Pay(sim, id, card));
        });
        app.MapPost("/checkout/{id}/3ds", async (string id, HttpRequest request, Sim sim) =>
        {
            var form = await request.ReadFormAsync();
            var outcome = form["outcome"].ToString();
            return sim.Locked(() =>
            {
                if (!sim.State.CheckoutSessions.TryGetValue(id, out var session) || session.PendingCard is null)
                {
                    return Html("<p>No authentication is pending for this session.</p>", 400);
                }
                var card = session.PendingCard;
                session.PendingCard = null;
                if (outcome != "complete")
                {
                    return CheckoutPage(sim, id, "We are unable to authenticate your payment method. Please choose a different payment method and try again.", 200);
                }
                return Complete(sim, session, card);
            });
        });
        app.MapPost("/checkout/{id}/cancel", (string id, Sim sim) => sim.Locked(() =>
        {
            if (!sim.State.CheckoutSessions.TryGetValue(id, out var session))
            {
                return Html("<p>No such checkout session.</p>", 404);
            }
            return session.CancelUrl is { Length: > 0 } url ? SeeOther(url) : Html("<p>Canceled.</p>", 200);
        }));

        app.MapGet("/portal/{id}", (string id, Sim sim) => sim.Locked(() => PortalPage(sim, id, null)));
        app.MapPost("/portal/{id}/{action}", async (string id, string action, HttpRequest request, Sim sim) =>
        {
            var form = await request.ReadFormAsync();
            return sim.Locked(() => PortalAction(sim, id, action, form["subscription"].ToString(), form["price"].ToString()));
        });

        app.MapGet("/invoices/{id}", (string id, Sim sim) => sim.Locked(() =>
        {
            if (!sim.State.Invoices.TryGetValue(id, out var invoice))
            {
                return Html("<p>No such invoice.</p>", 404);
            }
            var rows = string.Concat(invoice.Lines.Select(l => $"<tr><td>{E(l.Description)}</td><td>{E(BillingEngine.FormatAmount(l.Amount, invoice.Currency))}</td></tr>"));
            return Html($"<h1>Invoice {E(invoice.Number ?? invoice.Id)}</h1><p>Status: <b>{E(invoice.Status)}</b></p><table>{rows}</table><p>Amount due: {E(BillingEngine.FormatAmount(invoice.AmountDue, invoice.Currency))}</p>", 200);
        }));
        app.MapGet("/invoices/{id}/pdf", (string id) => Results.Text($"%PDF-1.4\n% Billing simulator invoice {id}\n", "application/pdf"));
        app.MapGet("/receipts/{id}", (string id, Sim sim) => sim.Locked(() =>
            sim.State.Charges.TryGetValue(id, out var charge)
                ? Html($"<h1>Receipt</h1><p>{E(BillingEngine.FormatAmount(charge.Amount, charge.Currency))} paid with card •••• {E(charge.Last4)}</p><p>Refunded: {E(BillingEngine.FormatAmount(charge.AmountRefunded, charge.Currency))}</p>", 200)
                : Html("<p>No such receipt.</p>", 404)));
    }

    private static IResult Pay(Sim sim, string id, string card)
    {
        if (!sim.State.CheckoutSessions.TryGetValue(id, out var session))
        {
            return Html("<p>No such checkout session.</p>", 404);
        }
        if (session.Status != "open")
        {
            return CheckoutPage(sim, id, session.Status == "complete" ? "This Checkout Session has already been paid." : "This Checkout Session is no longer active.", 409);
        }
        var normalized = BillingEngine.NormalizeCard(card);
        if (normalized == BillingEngine.CardThreeDSecure)
        {
            session.PendingCard = normalized;
            return Html($"""
                <h1>3D Secure 2 test page</h1>
                <p>Authenticate the payment of {E(BillingEngine.FormatAmount(session.AmountTotal, session.Currency))} for {E(session.Id)}.</p>
                <form method="post" action="/checkout/{E(id)}/3ds"><input type="hidden" name="outcome" value="complete"><button type="submit" id="complete">Complete authentication</button></form>
                <form method="post" action="/checkout/{E(id)}/3ds"><input type="hidden" name="outcome" value="fail"><button type="submit" id="fail">Fail authentication</button></form>
                """, 200);
        }
        return Complete(sim, session, normalized);
    }

    private static IResult Complete(Sim sim, CheckoutSession session, string card)
    {
        var outcome = sim.Engine.CompleteCheckout(session, card);
        if (!outcome.Succeeded)
        {
            return CheckoutPage(sim, session.Id, outcome.Message, 200);
        }
        var success = (session.SuccessUrl ?? "").Replace("{CHECKOUT_SESSION_ID}", session.Id, StringComparison.Ordinal);
        return success.Length > 0 ? SeeOther(success) : Html($"<h1>Thanks!</h1><p>Payment for {E(session.Id)} complete.</p>", 200);
    }

    private static IResult CheckoutPage(Sim sim, string id, string? error, int status)
    {
        if (!sim.State.CheckoutSessions.TryGetValue(id, out var session))
        {
            return Html("<p>No such checkout session.</p>", 404);
        }
        var sb = new StringBuilder();
        sb.Append("<h1>Billing simulator checkout</h1>");
        sb.Append("<table id=\"items\">");
        foreach (var li in session.LineItems)
        {
            var price = sim.State.Prices[li.PriceId];
            var product = sim.State.Products[price.ProductId];
            var every = price.IsRecurring ? " / " + BillingEngine.IntervalText(price) : "";
            var quantity = price.IsMetered ? "metered, per unit" : $"{li.Quantity} ×";
            sb.Append($"<tr><td class=\"product\">{E(product.Name)}</td><td>{E(quantity)}</td><td class=\"price\">{E(BillingEngine.FormatAmount(price.UnitPrice, price.Currency))}{E(every)}</td></tr>");
        }
        sb.Append("</table>");
        if (session.TrialPeriodDays is > 0)
        {
            sb.Append($"<p class=\"trial\">{session.TrialPeriodDays}-day free trial: nothing is charged today.</p>");
        }
        sb.Append($"<p>Total: <b>{E(BillingEngine.FormatAmount(session.AmountTotal, session.Currency))}</b></p>");
        if (error is not null)
        {
            sb.Append($"<p class=\"error\" role=\"alert\" style=\"color:#b00\">{E(error)}</p>");
        }
        if (session.Status == "open")
        {
            sb.Append($"""
                <form method="post" action="/checkout/{E(id)}/pay">
                  <label>Card number <input name="card" id="card" value="4242424242424242" autocomplete="off"></label>
                  <label><input type="radio" name="method" value="card" checked> Card</label>
                  <label><input type="radio" name="method" value="bank_debit"> Bank debit (settles later)</label>
                  <button type="submit" id="pay">Pay</button>
                </form>
                {(session.PaymentMethodCollection == "if_required" && session.TrialPeriodDays is > 0
                    ? $"<form method=\"post\" action=\"/checkout/{E(id)}/pay\"><input type=\"hidden\" name=\"card\" value=\"\"><button type=\"submit\" id=\"start-without-card\">Start the trial without a card</button></form>"
                    : "")}
                <form method="post" action="/checkout/{E(id)}/cancel"><button type="submit" id="cancel">Cancel</button></form>
                <p><small>Test cards: 4242424242424242 succeeds · 4000000000000002 declined · 4000000000009995 insufficient funds ·
                4000000000000341 later charges fail · 4000002760003184 3-D Secure</small></p>
                """);
        }
        else
        {
            sb.Append($"<p>Status: {E(session.Status)} ({E(session.PaymentStatus)})</p>");
        }
        return Html(sb.ToString(), status);
    }

    private static IResult PortalPage(Sim sim, string id, string? message)
    {
        if (!sim.State.PortalSessions.TryGetValue(id, out var portal))
        {
            return Html("<p>No such portal session.</p>", 404);
        }
        var customer = sim.State.Customers[portal.CustomerId];
        var sb = new StringBuilder($"<h1>Billing simulator customer portal</h1><p>{E(customer.Email ?? customer.Id)}</p>");
        if (message is not null)
        {
            sb.Append($"<p class=\"error\" role=\"alert\" style=\"color:#b00\">{E(message)}</p>");
        }
        var subs = sim.State.Subscriptions.Values.Where(s => s.CustomerId == customer.Id && !s.IsEnded).OrderByDescending(s => sim.State.Order(s.Id)).ToList();
        if (subs.Count == 0)
        {
            sb.Append("<p>No active subscription.</p>");
        }
        var recurring = sim.State.Prices.Values.Where(p => p.Active && p.IsRecurring && !p.IsMetered).OrderBy(p => sim.State.Order(p.Id)).ToList();
        foreach (var sub in subs)
        {
            var price = sim.State.Prices[sub.Item.PriceId];
            var product = sim.State.Products[price.ProductId];
            var periodEnd = DateTimeOffset.FromUnixTimeSeconds(sub.Item.PeriodEnd).ToString("yyyy-MM-dd HH:mm 'UTC'");
            sb.Append($"<div class=\"subscription\" id=\"{E(sub.Id)}\"><h2>{E(product.Name)}</h2>");
            sb.Append($"<p>{E(BillingEngine.FormatAmount(price.UnitPrice, price.Currency))} / {E(BillingEngine.IntervalText(price))} · status <b>{E(sub.Status)}</b></p>");
            sb.Append(sub.CancelAtPeriodEnd ? $"<p>Cancels on {E(periodEnd)}</p>" : $"<p>Renews on {E(periodEnd)}</p>");
            sb.Append(sub.CancelAtPeriodEnd
                ? PortalButton(id, "resume", sub.Id, "Don't cancel (resume)")
                : PortalButton(id, "cancel", sub.Id, "Cancel at period end"));
            var options = string.Concat(recurring.Where(p => p.Id != price.Id && p.Currency == sub.Currency).Select(p =>
                $"<option value=\"{E(p.Id)}\">{E(sim.State.Products[p.ProductId].Name)} — {E(BillingEngine.FormatAmount(p.UnitPrice, p.Currency))} / {E(BillingEngine.IntervalText(p))}{(p.LookupKey is null ? "" : " (" + E(p.LookupKey) + ")")}</option>"));
            if (options.Length > 0)
            {
                sb.Append($"<form method=\"post\" action=\"/portal/{E(id)}/switch\"><input type=\"hidden\" name=\"subscription\" value=\"{E(sub.Id)}\"><select name=\"price\">{options}</select><button type=\"submit\">Switch plan</button></form>");
            }
            sb.Append("</div>");
        }
        if (portal.ReturnUrl is { Length: > 0 } returnUrl)
        {
            sb.Append($"<p><a id=\"return\" href=\"{E(returnUrl)}\">Return</a></p>");
        }
        return Html(sb.ToString(), 200);
    }

    private static string PortalButton(string portalId, string action, string subscriptionId, string label) =>
        $"<form method=\"post\" action=\"/portal/{E(portalId)}/{action}\"><input type=\"hidden\" name=\"subscription\" value=\"{E(subscriptionId)}\"><button type=\"submit\">{E(label)}</button></form>";

    private static IResult PortalAction(Sim sim, string id, string action, string subscriptionId, string priceId)
    {
        if (!sim.State.PortalSessions.TryGetValue(id, out var portal))
        {
            return Html("<p>No such portal session.</p>", 404);
        }
        if (!sim.State.Subscriptions.TryGetValue(subscriptionId, out var sub) || sub.CustomerId != portal.CustomerId || sub.IsEnded)
        {
            return PortalPage(sim, id, "That subscription cannot be changed here.");
        }
        var before = sim.Json.Subscription(sub);
        try
        {
            switch (action)
            {
                case "cancel":
                    sim.Engine.SetCancelAtPeriodEnd(sub, true, before);
                    break;
                case "resume":
                    sim.Engine.SetCancelAtPeriodEnd(sub, false, before);
                    break;
                case "switch":
                    if (!sim.State.Prices.TryGetValue(priceId, out var price) || !price.Active || !price.IsRecurring || price.IsMetered)
                    {
                        return PortalPage(sim, id, "Choose an active recurring price.");
                    }
                    var updates = sim.Engine.ResolveItemChanges(sub, [new ItemRequest("items[0]", sub.Item, price, null, false)], "items");
                    sim.Engine.ChangeItems(sub, updates, "always_invoice", null, "allow_incomplete", null);
                    sim.Engine.SyncCurrentPhase(sub);
                    break;
                default:
                    return Html("<p>Unknown action.</p>", 404);
            }
        }
        catch (StripeError error)
        {
            return PortalPage(sim, id, error.Message);
        }
        var after = sim.Json.Subscription(sub);
        var diff = BillingEngine.Diff(before, after);
        if (diff.Count > 0)
        {
            sim.State.Emit("customer.subscription.updated", after, diff);
        }
        return SeeOther($"/portal/{id}");
    }

    private static IResult SeeOther(string url) => new SeeOtherResult(url);

    private static IResult Html(string body, int status) => Results.Content(
        $"<!doctype html><html><head><meta charset=\"utf-8\"><title>Billing simulator</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\">{body}</body></html>",
        "text/html; charset=utf-8", Encoding.UTF8, status);

    private static string E(string? text) => WebUtility.HtmlEncode(text ?? "");

    private sealed class SeeOtherResult(string url) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.StatusCode = StatusCodes.Status303SeeOther;
            httpContext.Response.Headers.Location = url;
            return Task.CompletedTask;
        }
    }
}
