using System.Security.Claims;
using Billing.Catalog;
using Billing.Payments.Api.Webhooks;
using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Stripe;
using Dapper;
using Npgsql;
using Stripe;

namespace Billing.Payments.Api.Endpoints;

/// <summary>
/// Admin refunds and reconciliation. A refund only asks Stripe; its effects (access ends, tokens are clawed back)
/// follow from Stripe's <c>charge.refunded</c>, like every other change, so a refund made in Stripe's dashboard has the
/// same effects as one made here.
/// </summary>
public static class RefundEndpoints
{
    private static readonly string[] Reasons = ["requested_by_customer", "duplicate", "fraudulent"];

    public sealed record RefundRequest(string? PaymentId, long? Amount, string? Reason, bool? Force);

    public static IEndpointRouteBuilder MapAdminPaymentsApi(this IEndpointRouteBuilder app)
    {
        var admin = app.MapGroup("/api/admin").RequireAuthorization(BillingPolicies.Admin);
        admin.MapPost("/refunds", RefundAsync).WithName("RefundPayment")
            .WithSummary("Refunds a payment fully or partly through Stripe; outside the catalog's refund window only with force.");
        admin.MapPost("/reconcile", async (Reconciler reconciler, CancellationToken ct) => TypedResults.Ok(await reconciler.RunAsync(ct)))
            .WithName("Reconcile")
            .WithSummary("Reads Stripe's events since the last cursor and processes any the webhook never delivered.");
        return app;
    }

    private static async Task<IResult> RefundAsync(RefundRequest? request, ClaimsPrincipal admin, NpgsqlDataSource db, BillingCatalog catalog,
        IStripeClient stripe, StripeCalls calls, TimeProvider clock, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        if (string.IsNullOrWhiteSpace(request?.PaymentId) || request.PaymentId.Length > 255)
        {
            errors["paymentId"] = ["required: the id of a payment from /api/payments/me"];
        }
        if (request?.Amount is <= 0)
        {
            errors["amount"] = ["a positive amount in the currency's minor unit, or leave it out to refund the rest"];
        }
        if (request?.Reason is { } reason && !Reasons.Contains(reason))
        {
            errors["reason"] = ["one of requested_by_customer, duplicate, fraudulent"];
        }
        if (errors.Count > 0)
        {
            return Problems.Validation(errors);
        }

        await using var connection = await db.OpenConnectionAsync(ct);
        var payment = await connection.QuerySingleOrDefaultAsync<(string Id, string UserId, long Amount, long AmountRefunded, string Currency,
            string? PaymentIntentId, string? ChargeId, DateTime PaidAt)?>(new CommandDefinition(
            "SELECT id, user_id, amount, amount_refunded, currency, payment_intent_id, charge_id, paid_at FROM payments WHERE id = @id",
            new { id = request!.PaymentId }, cancellationToken: ct));
        if (payment is not { } p)
        {
            return Problems.Problem(404, "payment_not_found", "No such payment.", request.PaymentId);
        }
        var left = p.Amount - p.AmountRefunded;
        if (left <= 0)
        {
            return Problems.Problem(409, "already_refunded", "The payment is already refunded in full.");
        }
        var amount = request.Amount ?? left;
        if (amount > left)
        {
            return Problems.Validation(new Dictionary<string, string[]> { ["amount"] = [$"at most {left} {p.Currency} is left to refund"] });
        }
        var paidAt = new DateTimeOffset(DateTime.SpecifyKind(p.PaidAt, DateTimeKind.Utc));
        var windowEnds = paidAt.AddDays(catalog.RefundWindowDays);
        if (clock.GetUtcNow() > windowEnds && request.Force != true)
        {
            return Problems.Problem(409, "outside_refund_window", "The payment is outside the refund window.",
                $"Refunds without force are possible until {windowEnds:u} ({catalog.RefundWindowDays} days after payment); send \"force\": true to refund anyway.",
                new Dictionary<string, object?> { ["refundWindowEndedAt"] = windowEnds });
        }
        if (p.PaymentIntentId is null && p.ChargeId is null)
        {
            return Problems.Problem(409, "not_refundable", "The payment has no charge to refund.");
        }

        var options = new RefundCreateOptions
        {
            Amount = amount,
            Reason = request.Reason ?? "requested_by_customer",
            Metadata = new Dictionary<string, string> { ["paymentId"] = p.Id, ["userId"] = p.UserId, ["requestedBy"] = admin.UserId() ?? "admin" },
        };
        if (p.PaymentIntentId is not null)
        {
            options.PaymentIntent = p.PaymentIntentId;
        }
        else
        {
            options.Charge = p.ChargeId;
        }
        // Keyed on what was refunded before: a retried call refunds once; a later, deliberate second refund gets a new key.
        var refund = await calls.RunAsync(c => new RefundService(stripe).CreateAsync(options,
            new RequestOptions { IdempotencyKey = $"billing-refund-{p.Id}-{p.AmountRefunded}-{amount}" }, c), ct);
        return TypedResults.Ok(new { refundId = refund.Id, paymentId = p.Id, amount = refund.Amount, currency = refund.Currency, status = refund.Status });
    }
}
