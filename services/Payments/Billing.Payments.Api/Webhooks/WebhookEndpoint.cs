using System.Text;
using Billing.Payments.Api.Persistence;
using Billing.Payments.Core.Webhooks;
using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Stripe;
using Microsoft.AspNetCore.Http.Features;
using Stripe;

namespace Billing.Payments.Api.Webhooks;

/// <summary>
/// <c>POST /webhooks/stripe</c> (ARCHITECTURE.md rule 1): verify the signature on the raw body, store the event once
/// (unique on Stripe's event id), and only then answer 200. Processing happens afterwards, in the background.
/// </summary>
public static class WebhookEndpoint
{
    /// <summary>Stripe's events are far below this; anything larger is not from Stripe.</summary>
    public const int MaxBodyBytes = 1024 * 1024;

    /// <summary>Stripe's default tolerance for the signature's timestamp, both directions.</summary>
    public const long ToleranceSeconds = 300;

    public static IEndpointRouteBuilder MapStripeWebhook(this IEndpointRouteBuilder app)
    {
        app.MapPost("/webhooks/stripe", ReceiveAsync)
            .AllowAnonymous()
            .WithName("ReceiveStripeWebhook")
            .WithSummary("Stripe's webhook: 200 once the event is durably stored (also for duplicates and ignored types).");
        return app;
    }

    private static async Task<IResult> ReceiveAsync(HttpContext http, EventStore events, StripeSettings stripe, ILogger<EventStore> logger, CancellationToken ct)
    {
        if (http.Request.ContentLength > MaxBodyBytes)
        {
            return TooLarge();
        }
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = MaxBodyBytes;
        }

        var signature = http.Request.Headers["Stripe-Signature"].ToString();
        if (string.IsNullOrWhiteSpace(signature))
        {
            return Problems.Problem(400, "missing_signature", "The Stripe-Signature header is missing.");
        }
        if (string.IsNullOrEmpty(stripe.WebhookSecret))
        {
            return Problems.Problem(503, "webhook_secret_missing", "STRIPE_WEBHOOK_SECRET is not configured.");
        }

        string body;
        try
        {
            body = await ReadBodyAsync(http.Request, ct);
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == 413)
        {
            return TooLarge();
        }
        if (body.Length > MaxBodyBytes)
        {
            return TooLarge();
        }

        try
        {
            EventUtility.ValidateSignature(body, signature, stripe.WebhookSecret, ToleranceSeconds);
        }
        catch (StripeException ex)
        {
            logger.LogWarning("Refused a webhook: {Reason}", ex.Message);
            return Problems.Problem(400, "invalid_signature", "The Stripe signature does not match.", ex.Message);
        }

        var (envelope, error) = EnvelopeReader.Read(body);
        if (envelope is null)
        {
            return Problems.Problem(400, "invalid_event", "The body is not a Stripe event.", error);
        }

        var isNew = await events.StoreAsync(envelope, body, "webhook", ct);
        if (isNew)
        {
            BillingMetrics.RecordWebhookIngested(envelope.Type, envelope.Created, DateTimeOffset.UtcNow);
        }
        return TypedResults.Ok(new WebhookAck(true, !isNew, StripeEventTypes.Handled.Contains(envelope.Type) ? "queued" : "ignored"));
    }

    private static async Task<string> ReadBodyAsync(HttpRequest request, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, ct)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > MaxBodyBytes)
            {
                break;
            }
        }
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static IResult TooLarge() =>
        Problems.Problem(413, "payload_too_large", "The webhook body is larger than 1 MiB.");

    public sealed record WebhookAck(bool Received, bool Duplicate, string Processing);
}
