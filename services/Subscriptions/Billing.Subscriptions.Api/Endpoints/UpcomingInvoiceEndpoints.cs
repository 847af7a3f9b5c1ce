using System.Security.Claims;
using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Stripe;
using Billing.Subscriptions.Api.Persistence;
using Billing.Subscriptions.Core.Subscriptions;
using Stripe;
using static Billing.ServiceDefaults.Stripe.StripeDates;

namespace Billing.Subscriptions.Api.Endpoints;

/// <summary>
/// <c>GET /api/subscriptions/me/upcoming-invoice</c> (additive): what Stripe will charge at the next renewal as of now —
/// the plan's next period, the overage of billed meters used so far this period, prorations waiting for that invoice —
/// from Stripe's own invoice preview, so the figure is the one Stripe will compute.
/// </summary>
public static class UpcomingInvoiceEndpoints
{
    public sealed record UpcomingInvoice(long AmountDue, string Currency, DateTimeOffset? BilledAt, IReadOnlyList<UpcomingLine> Lines);

    /// <summary>One line: <c>kind</c> is <c>plan</c>, <c>overage</c> (a metered price) or <c>proration</c>.</summary>
    public sealed record UpcomingLine(string Kind, string Description, long Amount, decimal? Quantity, DateTimeOffset PeriodStart, DateTimeOffset PeriodEnd);

    public static IEndpointRouteBuilder MapUpcomingInvoiceApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/subscriptions/me/upcoming-invoice", GetAsync)
            .RequireAuthorization(BillingPolicies.User)
            .WithName("GetMyUpcomingInvoice")
            .WithSummary("What the next renewal will charge as of now (Stripe's invoice preview): the plan and the overage used so far.");
        return app;
    }

    private static async Task<IResult> GetAsync(ClaimsPrincipal user, SubscriptionStore store, IStripeClient stripe, StripeCalls calls, CancellationToken ct)
    {
        var current = await store.CurrentAsync(user.UserId()!, ct);
        if (current is null || !SubscriptionStatus.Live.Contains(current.StripeStatus))
        {
            return LifecycleEndpoints.NoSubscription();
        }
        var subscription = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(current.SubscriptionId, cancellationToken: c), ct);
        Invoice preview;
        try
        {
            preview = await calls.RunAsync(c => new InvoiceService(stripe).CreatePreviewAsync(
                new InvoiceCreatePreviewOptions { Subscription = subscription.Id }, cancellationToken: c), ct);
        }
        catch (StripeException ex) when (ex.StripeError?.Code == "invoice_upcoming_none")
        {
            return Problems.Problem(404, "no_upcoming_invoice", "Nothing more will be charged.",
                "The subscription ends at the period end and has nothing left to bill.");
        }
        var lines = (preview.Lines?.Data ?? []).Select(l => new UpcomingLine(
            InvoiceLines.IsProration(l) ? "proration" : InvoiceLines.IsOverage(l) ? "overage" : "plan",
            l.Description ?? "", l.Amount, l.QuantityDecimal ?? l.Quantity,
            Utc(l.Period.Start), Utc(l.Period.End))).ToList();
        // The renewal happens when the current period ends (Stripe dates the preview then), or a cancellation set for earlier
        // bills its last overage then.
        var periodEnd = subscription.PlanItemOrNull()?.CurrentPeriodEnd;
        DateTimeOffset? billedAt = subscription.CancelAt is { } cancelAt && (periodEnd is null || cancelAt < periodEnd) ? Utc(cancelAt)
            : periodEnd is { } end ? Utc(end) : null;
        return TypedResults.Ok(new UpcomingInvoice(preview.AmountDue, preview.Currency, billedAt, lines));
    }
}
