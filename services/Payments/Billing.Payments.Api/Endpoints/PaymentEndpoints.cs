using System.Security.Claims;
using Billing.Payments.Api.Persistence;
using Billing.ServiceDefaults;
using Dapper;
using Npgsql;

namespace Billing.Payments.Api.Endpoints;

/// <summary>The user's payment history and the admin views of the webhook inbox (API.md "Payments").</summary>
public static class PaymentEndpoints
{
    public static IEndpointRouteBuilder MapPaymentsApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/payments/me", ListMineAsync)
            .RequireAuthorization(BillingPolicies.User)
            .WithName("ListMyPayments")
            .WithSummary("Every paid invoice and token pack of the user, newest first.");

        var admin = app.MapGroup("/api/admin").RequireAuthorization(BillingPolicies.Admin);
        admin.MapGet("/webhook-events", ListEventsAsync)
            .WithName("ListWebhookEvents")
            .WithSummary("Stored Stripe events, newest first; ?status=pending|processed|ignored|failed.");
        admin.MapPost("/webhook-events/{id}/replay", ReplayAsync)
            .WithName("ReplayWebhookEvent")
            .WithSummary("Processes a stored event again (it re-reads Stripe, so a replay is always safe).");
        return app;
    }

    private static async Task<IResult> ListMineAsync(ClaimsPrincipal user, NpgsqlDataSource db, int? limit, CancellationToken ct)
    {
        if (limit is < 1 or > 200)
        {
            return Problems.Validation(new Dictionary<string, string[]> { ["limit"] = ["1 to 200"] });
        }
        await using var connection = await db.OpenConnectionAsync(ct);
        var items = await connection.QueryAsync<PaymentDto>(new CommandDefinition(
            """
            SELECT id AS Id, kind AS Kind, amount AS Amount, amount_refunded AS AmountRefunded, currency AS Currency, status AS Status,
                   description AS Description, invoice_url AS InvoiceUrl, receipt_url AS ReceiptUrl, paid_at AS CreatedAt,
                   dispute_status AS DisputeStatus
            FROM payments WHERE user_id = @userId ORDER BY paid_at DESC, id LIMIT @limit
            """, new { userId = user.UserId(), limit = limit ?? 100 }, cancellationToken: ct));
        return TypedResults.Ok(new { items });
    }

    private static readonly string[] Statuses = ["pending", "processed", "ignored", "failed"];

    private static async Task<IResult> ListEventsAsync(EventStore events, string? status, int? limit, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        if (status is not null && !Statuses.Contains(status))
        {
            errors["status"] = ["one of pending, processed, ignored, failed"];
        }
        if (limit is < 1 or > 500)
        {
            errors["limit"] = ["1 to 500"];
        }
        if (errors.Count > 0)
        {
            return Problems.Validation(errors);
        }
        return TypedResults.Ok(new { items = await events.ListAsync(status, limit ?? 100, ct) });
    }

    private static async Task<IResult> ReplayAsync(string id, EventStore events, CancellationToken ct) =>
        id.Length <= 255 && await events.ReplayAsync(id, ct)
            ? TypedResults.Ok(new { id, status = "pending" })
            : Problems.Problem(404, "not_found", "No such Stripe event is stored.", id.Length <= 255 ? id : null);

    public sealed record PaymentDto(string Id, string Kind, long Amount, long AmountRefunded, string Currency, string Status,
        string Description, string? InvoiceUrl, string? ReceiptUrl, DateTimeOffset CreatedAt, string? DisputeStatus);
}
