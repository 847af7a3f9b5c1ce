using System.Net;

namespace Billing.Gateway;

/// <summary>
/// Where Stripe Checkout and the customer portal send a user back when the product named no URL of its own: plain
/// pages that say what happened. Products normally pass their own <c>successUrl</c> / <c>cancelUrl</c> / <c>returnUrl</c>.
/// </summary>
internal static class ReturnPages
{
    public static void MapReturnPages(this WebApplication app)
    {
        app.MapGet("/billing/checkout/success", (string? session_id) => Page("Payment received",
            "Thank you — your payment went through. Your plan or tokens are ready in a moment; you can close this page.",
            session_id is null ? null : $"Checkout session {session_id}")).AllowAnonymous().ExcludeFromDescription();
        app.MapGet("/billing/checkout/cancel", () => Page("Checkout cancelled", "Nothing was charged. You can close this page.", null))
            .AllowAnonymous().ExcludeFromDescription();
        app.MapGet("/billing/account", () => Page("Billing", "You are back from the billing portal. You can close this page.", null))
            .AllowAnonymous().ExcludeFromDescription();
    }

    private static IResult Page(string title, string message, string? note) => Results.Content(
        $$"""
        <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
        <title>{{WebUtility.HtmlEncode(title)}}</title>
        <style>body{font:16px system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2933}small{color:#616e7c}</style></head>
        <body><h1>{{WebUtility.HtmlEncode(title)}}</h1><p>{{WebUtility.HtmlEncode(message)}}</p>
        {{(note is null ? "" : $"<p><small>{WebUtility.HtmlEncode(note)}</small></p>")}}</body></html>
        """, "text/html; charset=utf-8");
}
