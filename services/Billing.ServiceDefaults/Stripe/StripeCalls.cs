using System.Net;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.Retry;
using Polly.Timeout;
using Stripe;

namespace Billing.ServiceDefaults.Stripe;

/// <summary>Stripe could not be reached or kept failing; the caller answers 503 and nothing was half-done.</summary>
public sealed class StripeUnavailableException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// Every call to Stripe goes through one Polly pipeline: a timeout per attempt and retries with exponential back-off
/// and jitter on connection errors, timeouts, 409 (idempotency conflicts), 429 and 5xx. A POST carries the caller's
/// own Idempotency-Key (derived from its operation), which every retry reuses, so a retry can never do the thing twice.
/// Stripe.net's own retries are switched off so the two do not multiply.
/// </summary>
public sealed class StripeCalls
{
    private readonly ResiliencePipeline _pipeline;

    public StripeCalls(ILogger<StripeCalls> logger, int retries = 3, TimeSpan? timeout = null)
    {
        var builder = new ResiliencePipelineBuilder();
        if (retries > 0)
        {
            builder.AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = retries,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromMilliseconds(300),
                ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
                OnRetry = args =>
                {
                    logger.LogWarning(args.Outcome.Exception, "Stripe call failed (attempt {Attempt}); retrying in {Delay}", args.AttemptNumber + 1, args.RetryDelay);
                    return ValueTask.CompletedTask;
                },
            });
        }
        _pipeline = builder.AddTimeout(timeout ?? TimeSpan.FromSeconds(15)).Build();
    }

    /// <summary>Runs <paramref name="call"/> with retries; throws <see cref="StripeUnavailableException"/> when Stripe stays down.</summary>
    public async Task<T> RunAsync<T>(Func<CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        try
        {
            return await _pipeline.ExecuteAsync(async ct => await call(ct), cancellationToken);
        }
        catch (Exception ex) when (IsTransient(ex) && !cancellationToken.IsCancellationRequested)
        {
            throw new StripeUnavailableException("Stripe is unavailable: " + ex.Message, ex);
        }
    }

    /// <summary>
    /// True when Stripe itself answered <paramref name="ex"/>'s request with an error (not: no answer, a timeout, a 409 or
    /// 429, which Stripe does not keep). Stripe replays that answer for the request's idempotency key for a day, so the
    /// next attempt needs a new key.
    /// </summary>
    public static bool AnsweredByStripe(Exception ex) =>
        (ex is StripeUnavailableException { InnerException: { } inner } ? inner : ex) is StripeException { HttpStatusCode: var code }
        && (int)code >= 400 && code is not (HttpStatusCode.Conflict or HttpStatusCode.TooManyRequests);

    /// <summary>True for failures that a retry may heal.</summary>
    public static bool IsTransient(Exception ex) => ex switch
    {
        StripeException s => s.HttpStatusCode is 0 or HttpStatusCode.Conflict or HttpStatusCode.TooManyRequests || (int)s.HttpStatusCode >= 500
                             || s.InnerException is HttpRequestException or TaskCanceledException,
        HttpRequestException => true,
        TimeoutRejectedException => true,
        TaskCanceledException => true,
        _ => false,
    };
}
