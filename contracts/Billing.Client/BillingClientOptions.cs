namespace Billing.Client;

/// <summary>Where Billing is, how to authenticate, and how hard to retry.</summary>
public sealed class BillingClientOptions
{
    /// <summary>The gateway, e.g. <c>http://127.0.0.1:8080/</c>. Used when the <see cref="HttpClient"/> has no base address.</summary>
    public Uri? BaseAddress { get; set; }

    /// <summary>
    /// Returns the bearer token for each request: a service token whose <c>scope</c> contains <c>billing.usage</c> for
    /// consume, reservations and <c>GetEntitlementsAsync(userId)</c>. Called once per attempt, so a refreshed token is used.
    /// </summary>
    public Func<CancellationToken, ValueTask<string?>>? TokenProvider { get; set; }

    /// <summary>Retries after the first attempt on 5xx, 408, 429, timeouts and connection errors (same idempotency key). Default 3.</summary>
    public int MaxRetries { get; set; } = 3;

    /// <summary>The first back-off; doubles each retry, with jitter. Default 200 ms.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// The longest wait a 429 or 503's <c>Retry-After</c> may ask for before the next retry (a longer one is waited this
    /// long). Without the header the back-off of <see cref="RetryDelay"/> applies. Default 10 s.
    /// </summary>
    public TimeSpan MaxRetryAfter { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The time one attempt may take before it is abandoned and retried. Default 10 s.</summary>
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Makes an idempotency key when the caller passes none. Default: <c>"bc-" + a new GUID</c>.</summary>
    public Func<string> IdempotencyKeyFactory { get; set; } = () => "bc-" + Guid.NewGuid().ToString("N");
}
