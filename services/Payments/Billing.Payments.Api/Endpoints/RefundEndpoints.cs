using System.Security.Claims;
using System.Text.RegularExpressions;
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
public static partial class RefundEndpoints
{
    /// <summary>The optional request header that makes a refund request safe to retry: one key, one refund.</summary>
    public const string IdempotencyHeader = "Idempotency-Key";

    private static readonly string[] Reasons = ["requested_by_customer", "duplicate", "fraudulent"];

    public sealed record RefundRequest(string? PaymentId, long? Amount, string? Reason, bool? Force);

    public static IEndpointRouteBuilder MapAdminPaymentsApi(this IEndpointRouteBuilder app)
    {
        var admin = app.MapGroup("/api/admin").RequireAuthorization(BillingPolicies.Admin);
        admin.MapPost("/refunds", RefundAsync).WithName("RefundPayment")
            .WithSummary("Refunds a payment fully or partly through Stripe; outside the catalog's refund window only with force.");
        // Not cancelled when the caller gives up (a gateway timeout on a long first run): the run finishes and stores its
        // cursor, and the next call reports from there. Service shutdown still stops it.
        admin.MapPost("/reconcile", async (Reconciler reconciler, IHostApplicationLifetime lifetime) =>
                TypedResults.Ok(await reconciler.RunAsync(lifetime.ApplicationStopping)))
            .WithName("Reconcile")
            .WithSummary("Reads Stripe's events since the last cursor and processes any the webhook never delivered.");
        return app;
    }

    private static async Task<IResult> RefundAsync(RefundRequest? request, HttpRequest http, ClaimsPrincipal admin, NpgsqlDataSource db,
        BillingCatalog catalog, IStripeClient stripe, StripeCalls calls, TimeProvider clock, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        string? idempotencyKey = null;
        if (http.Headers.TryGetValue(IdempotencyHeader, out var keys))
        {
            if (keys.Count == 1 && keys[0] is { } key && IdempotencyKeyPattern().IsMatch(key))
            {
                idempotencyKey = key;
            }
            else
            {
                errors[IdempotencyHeader] = ["1 to 128 letters, digits, '-', '_', '.' or ':'; the same key always names the same refund"];
            }
        }
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
            string? PaymentIntentId, string? ChargeId, DateTime PaidAt, string? DisputeStatus, int RefundsUndone)?>(new CommandDefinition(
            """
            SELECT id, user_id, amount, amount_refunded, currency, payment_intent_id, charge_id, paid_at, dispute_status, refunds_undone
            FROM payments WHERE id = @id
            """,
            new { id = request!.PaymentId }, cancellationToken: ct));
        if (payment is not { } p)
        {
            return Problems.Problem(404, "payment_not_found", "No such payment.", request.PaymentId);
        }
        var payable = new Payable(p.Id, p.UserId, p.PaymentIntentId, p.ChargeId);

        // A retry of a request made with this key: the first one passed the checks below and fixed what the key refunds, so
        // it goes to Stripe again unchanged, whatever the charge.refunded webhook changed since, and Stripe answers with the
        // refund it made the first time.
        if (idempotencyKey is not null && await EarlierRequestAsync(connection, p.Id, idempotencyKey, ct) is { } earlier)
        {
            return await RepeatAsync(earlier);
        }

        var left = p.Amount - p.AmountRefunded;
        if (left <= 0)
        {
            return Problems.Problem(409, "already_refunded", "The payment is already refunded in full.");
        }
        if (p.DisputeStatus is { } dispute && !dispute.StartsWith("warning_", StringComparison.Ordinal))
        {
            // Stripe refuses to refund a disputed charge: the bank decides where the money goes. (An inquiry can be refunded.)
            return Problems.Problem(409, "payment_disputed", "The payment is disputed; the card issuer decides on its money.",
                $"Dispute status: {dispute}.");
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

        var refundReason = request.Reason ?? "requested_by_customer";
        var requestedBy = admin.UserId() ?? "admin";
        if (idempotencyKey is null)
        {
            // Without a key: keyed on what was refunded before, so a retry before the webhook lands refunds once. A caller that
            // needs a retry to be safe after that, or two equal partial refunds in a row, sends an Idempotency-Key. After a
            // refund failed, the same amounts would name the failed refund again (Stripe keeps a key a day): its count tells.
            return Answer(payable, await CreateRefundAsync(stripe, calls, payable, amount, refundReason, requestedBy,
                $"billing-refund-{p.Id}-{p.AmountRefunded}-{amount}" + (p.RefundsUndone > 0 ? $"-u{p.RefundsUndone}" : ""), ct));
        }
        var recorded = await connection.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO refund_requests (payment_id, idempotency_key, amount, reason, requested_by)
            VALUES (@paymentId, @idempotencyKey, @amount, @reason, @requestedBy)
            ON CONFLICT (payment_id, idempotency_key) DO NOTHING
            """, new { paymentId = p.Id, idempotencyKey, amount, reason = refundReason, requestedBy }, cancellationToken: ct));
        if (recorded == 0)
        {
            // The same key arrived twice at once; the other request recorded it first.
            return await RepeatAsync((await EarlierRequestAsync(connection, p.Id, idempotencyKey, ct))!);
        }
        return await CreateKeptAsync(amount, refundReason, requestedBy);

        async Task<IResult> RepeatAsync(EarlierRequest earlier)
        {
            if ((request.Amount is { } asked && asked != earlier.Amount) || (request.Reason is { } why && why != earlier.Reason))
            {
                return Problems.Problem(409, "idempotency_conflict", "This idempotency key was used for another refund of this payment.",
                    $"The key refunded {earlier.Amount} {p.Currency} ({earlier.Reason}); the same key must always name the same refund.");
            }
            if (earlier.RefundId is { } refundId)
            {
                // Stripe answered before: the same refund, read again (its idempotency key may have expired since).
                return Answer(payable, await calls.RunAsync(c => new RefundService(stripe).GetAsync(refundId, cancellationToken: c), ct));
            }
            // Stripe's answer never reached us (a timeout, a crash): the refund may exist all the same, and after 24 hours
            // Stripe no longer knows the key. Look for it by the key it carries before making one.
            if (await FindRefundAsync(stripe, calls, payable, StripeKey(p.Id, idempotencyKey!), ct) is { } made)
            {
                await KeepAsync(made);
                return Answer(payable, made);
            }
            return await CreateKeptAsync(earlier.Amount, earlier.Reason, earlier.RequestedBy);
        }

        Task KeepAsync(Refund refund) => connection.ExecuteAsync(new CommandDefinition(
            "UPDATE refund_requests SET refund_id = @refundId WHERE payment_id = @paymentId AND idempotency_key = @idempotencyKey",
            new { refundId = refund.Id, paymentId = p.Id, idempotencyKey }, cancellationToken: ct));

        async Task<IResult> CreateKeptAsync(long refundAmount, string reason, string by)
        {
            var refund = await CreateRefundAsync(stripe, calls, payable, refundAmount, reason, by, StripeKey(p.Id, idempotencyKey!), ct);
            await KeepAsync(refund);
            return Answer(payable, refund);
        }
    }

    private static IResult Answer(Payable p, Refund refund) =>
        TypedResults.Ok(new { refundId = refund.Id, paymentId = p.Id, amount = refund.Amount, currency = refund.Currency, status = refund.Status });

    private static string StripeKey(string paymentId, string idempotencyKey) => $"billing-refund-{paymentId}-{idempotencyKey}";

    /// <summary>The refund's metadata entry naming the key it was made under, so it can be found without Stripe's memory of the key.</summary>
    private const string RefundKeyMetadata = "billingRefundKey";

    private static async Task<Refund?> FindRefundAsync(IStripeClient stripe, StripeCalls calls, Payable p, string stripeKey, CancellationToken ct)
    {
        var options = new RefundListOptions { Limit = 100 };
        if (p.PaymentIntentId is not null)
        {
            options.PaymentIntent = p.PaymentIntentId;
        }
        else
        {
            options.Charge = p.ChargeId;
        }
        var refunds = await calls.RunAsync(c => new RefundService(stripe).ListAsync(options, cancellationToken: c), ct);
        return refunds.Data.FirstOrDefault(r => r.Metadata?.GetValueOrDefault(RefundKeyMetadata) == stripeKey);
    }

    private static async Task<EarlierRequest?> EarlierRequestAsync(NpgsqlConnection connection, string paymentId, string idempotencyKey, CancellationToken ct) =>
        await connection.QuerySingleOrDefaultAsync<EarlierRequest>(new CommandDefinition(
            """
            SELECT amount AS Amount, reason AS Reason, requested_by AS RequestedBy, refund_id AS RefundId FROM refund_requests
            WHERE payment_id = @paymentId AND idempotency_key = @idempotencyKey
            """, new { paymentId, idempotencyKey }, cancellationToken: ct));

    private static async Task<Refund> CreateRefundAsync(IStripeClient stripe, StripeCalls calls, Payable p, long amount, string reason,
        string requestedBy, string stripeIdempotencyKey, CancellationToken ct)
    {
        var options = new RefundCreateOptions
        {
            Amount = amount,
            Reason = reason,
            Metadata = new Dictionary<string, string>
            {
                ["paymentId"] = p.Id, ["userId"] = p.UserId, ["requestedBy"] = requestedBy, [RefundKeyMetadata] = stripeIdempotencyKey,
            },
        };
        if (p.PaymentIntentId is not null)
        {
            options.PaymentIntent = p.PaymentIntentId;
        }
        else
        {
            options.Charge = p.ChargeId;
        }
        return await calls.RunAsync(c => new RefundService(stripe).CreateAsync(options,
            new RequestOptions { IdempotencyKey = stripeIdempotencyKey }, c), ct);
    }

    [GeneratedRegex("^[A-Za-z0-9_.:-]{1,128}$")]
    private static partial Regex IdempotencyKeyPattern();

    private sealed record Payable(string Id, string UserId, string? PaymentIntentId, string? ChargeId);

    private sealed record EarlierRequest(long Amount, string Reason, string RequestedBy, string? RefundId);
}
