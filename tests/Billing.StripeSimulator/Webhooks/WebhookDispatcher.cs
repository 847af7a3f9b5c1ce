using System.Security.Cryptography;
using System.Text;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Engine;

namespace Billing.StripeSimulator.Webhooks;

/// <summary>
/// Delivers events at least once, in creation order, without waiting for one event's success before trying the
/// next: a failed attempt (non-2xx or connection error) is retried later with back-off (1 s, 2 s, 4 s … capped at
/// 30 s), up to <see cref="MaxAttempts"/> attempts. HTTP happens outside the state lock.
/// </summary>
public sealed class WebhookDispatcher(Sim sim, IHttpClientFactory httpClientFactory, ILogger<WebhookDispatcher> logger) : BackgroundService
{
    public const int MaxAttempts = 8;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var reader = sim.State.Outbox.Reader;
        try
        {
            await foreach (var evt in reader.ReadAllAsync(stoppingToken))
            {
                await DeliverAsync(evt, scheduleRetry: true, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public static string Sign(string secret, long timestamp, string body)
    {
        using var hmac = new HMACSHA256(Encoding.UTF8.GetBytes(secret));
        var hash = hmac.ComputeHash(Encoding.UTF8.GetBytes($"{timestamp}.{body}"));
        return Convert.ToHexStringLower(hash);
    }

    /// <summary>One attempt; on failure schedules the next one unless the event ran out of attempts.</summary>
    public async Task<bool> DeliverAsync(SimEvent evt, bool scheduleRetry, CancellationToken cancellationToken)
    {
        string body;
        string? url;
        string secret;
        lock (sim.State.Gate)
        {
            if (!sim.State.EventsById.ContainsKey(evt.Id))
            {
                return false; // reset since it was queued
            }
            body = sim.Json.Event(evt).ToJsonString(Rendering.StripeJson.Wire);
            url = sim.State.Options.WebhookUrl;
            secret = sim.State.Options.WebhookSecret;
        }
        if (string.IsNullOrEmpty(url))
        {
            return false;
        }

        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        using var request = new HttpRequestMessage(HttpMethod.Post, url)
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        request.Headers.TryAddWithoutValidation("Stripe-Signature", $"t={timestamp},v1={Sign(secret, timestamp, body)}");
        request.Headers.TryAddWithoutValidation("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)");
        int? status = null;
        string? error = null;
        try
        {
            using var response = await httpClientFactory.CreateClient("webhooks").SendAsync(request, cancellationToken);
            status = (int)response.StatusCode;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            error = ex.Message;
        }
        var ok = status is >= 200 and < 300;
        int attempts;
        lock (sim.State.Gate)
        {
            evt.Attempts.Add(new DeliveryAttempt { At = timestamp, Status = status, Error = error });
            evt.Delivered |= ok;
            attempts = evt.Attempts.Count;
        }
        sim.State.Touch();
        if (!ok)
        {
            logger.LogInformation("Webhook {EventId} ({Type}) attempt {Attempt} failed: {Status} {Error}", evt.Id, evt.Type, attempts, status, error);
            if (scheduleRetry && attempts < MaxAttempts)
            {
                var delay = TimeSpan.FromSeconds(Math.Min(30, Math.Pow(2, attempts - 1)));
                _ = Task.Delay(delay, cancellationToken).ContinueWith(
                    _ => sim.State.Outbox.Writer.TryWrite(evt),
                    CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
            }
        }
        return ok;
    }
}
