using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace Billing.Client;

/// <summary>
/// Billing's usage API for an AI backend: "may user u42 spend one more?" (<see cref="ConsumeAsync"/>), reservations for
/// streaming calls (<see cref="ReserveAsync"/>), entitlements and usage. Every call retries transient failures (5xx, 408,
/// 429, timeouts, connection errors) with exponential back-off under the same idempotency key, so a retry never spends
/// twice. Each call is a span of <see cref="BillingClientTelemetry.ActivitySourceName"/>; HttpClient carries the W3C
/// trace context to Billing.
/// </summary>
public sealed class BillingClient
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly HttpClient _http;
    private readonly BillingClientOptions _options;
    private readonly ResiliencePipeline<HttpResponseMessage> _pipeline;

    /// <summary>Creates a client on <paramref name="http"/> (its base address, or <see cref="BillingClientOptions.BaseAddress"/>).</summary>
    public BillingClient(HttpClient http, BillingClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(http);
        ArgumentNullException.ThrowIfNull(options);
        _http = http;
        _options = options;
        if (_http.BaseAddress is null)
        {
            _http.BaseAddress = options.BaseAddress ?? throw new ArgumentException("Set BillingClientOptions.BaseAddress or the HttpClient's BaseAddress.", nameof(options));
        }
        _pipeline = BuildPipeline(options);
    }

    /// <summary>
    /// Spends <paramref name="quantity"/> of <paramref name="meter"/> for <paramref name="userId"/>, once per idempotency key.
    /// Throws a <see cref="BillingRefusedException"/> subclass on 402 (<see cref="QuotaExhaustedException"/>,
    /// <see cref="NoSubscriptionException"/>, <see cref="PaymentPastDueException"/>, <see cref="InsufficientTokensException"/>).
    /// </summary>
    /// <param name="userId">The end user (<c>sub</c> of their token).</param>
    /// <param name="meter">E.g. <c>ai.generation</c>.</param>
    /// <param name="quantity">How much; at least 1.</param>
    /// <param name="idempotencyKey">The key of this spend (e.g. the generation's id); made up when null. A retry with the same key spends nothing more.</param>
    /// <param name="groups">The groups on the user's own token, so an <c>unlimitedGroups</c> member is allowed.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<ConsumeResult> ConsumeAsync(string userId, string meter, long quantity = 1, string? idempotencyKey = null,
        IEnumerable<string>? groups = null, CancellationToken cancellationToken = default)
    {
        var outcome = await TryConsumeAsync(userId, meter, quantity, idempotencyKey, groups, cancellationToken).ConfigureAwait(false);
        return outcome.Result ?? throw BillingRefusedException.For(outcome.Refusal!);
    }

    /// <summary>Like <see cref="ConsumeAsync"/>, but a 402 is a value (<see cref="ConsumeOutcome.Refusal"/>) rather than an exception.</summary>
    public async Task<ConsumeOutcome> TryConsumeAsync(string userId, string meter, long quantity = 1, string? idempotencyKey = null,
        IEnumerable<string>? groups = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(userId);
        ArgumentException.ThrowIfNullOrWhiteSpace(meter);
        ArgumentOutOfRangeException.ThrowIfLessThan(quantity, 1);
        var key = string.IsNullOrWhiteSpace(idempotencyKey) ? _options.IdempotencyKeyFactory() : idempotencyKey;
        using var activity = StartActivity("billing consume", meter, quantity, key);
        var body = new { userId, meter, quantity, idempotencyKey = key, groups = groups?.ToArray() };
        try
        {
            using var response = await SendAsync(HttpMethod.Post, "api/usage/consume", body, cancellationToken).ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.PaymentRequired)
            {
                var refusal = await ReadRefusalAsync(response, meter, cancellationToken).ConfigureAwait(false);
                Tag(activity, "refused", refusal.Code);
                return new ConsumeOutcome(null, refusal);
            }
            await EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
            var result = await ReadAsync<ConsumeResult>(response, cancellationToken).ConfigureAwait(false);
            activity?.SetTag("billing.source", result.Source);
            Tag(activity, "allowed", null);
            return new ConsumeOutcome(result, null);
        }
        catch (BillingApiException ex)
        {
            ex.IdempotencyKey ??= key; // a caller that retries later must send the same key
            throw;
        }
    }

    /// <summary>
    /// Reserves <paramref name="quantity"/> for a call whose cost is known at the end. Commit the actual amount with
    /// <see cref="Reservation.CommitAsync"/>; <c>await using</c> releases it when it was not committed. Throws a
    /// <see cref="BillingRefusedException"/> subclass on 402.
    /// </summary>
    /// <param name="userId">The end user.</param>
    /// <param name="meter">E.g. <c>ai.generation</c>.</param>
    /// <param name="quantity">The most the call may cost.</param>
    /// <param name="idempotencyKey">The key of this reservation; made up when null.</param>
    /// <param name="ttl">How long the reservation holds before Billing releases it by itself (server default when null).</param>
    /// <param name="groups">The groups on the user's own token.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<Reservation> ReserveAsync(string userId, string meter, long quantity, string? idempotencyKey = null, TimeSpan? ttl = null,
        IEnumerable<string>? groups = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(userId);
        ArgumentException.ThrowIfNullOrWhiteSpace(meter);
        ArgumentOutOfRangeException.ThrowIfLessThan(quantity, 1);
        var key = string.IsNullOrWhiteSpace(idempotencyKey) ? _options.IdempotencyKeyFactory() : idempotencyKey;
        using var activity = StartActivity("billing reserve", meter, quantity, key);
        var body = new
        {
            userId, meter, quantity, idempotencyKey = key,
            ttlSeconds = ttl is { } t ? (int?)Math.Max(1, (int)Math.Ceiling(t.TotalSeconds)) : null,
            groups = groups?.ToArray(),
        };
        try
        {
            using var response = await SendAsync(HttpMethod.Post, "api/usage/reservations", body, cancellationToken).ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.PaymentRequired)
            {
                var refusal = await ReadRefusalAsync(response, meter, cancellationToken).ConfigureAwait(false);
                Tag(activity, "refused", refusal.Code);
                throw BillingRefusedException.For(refusal);
            }
            await EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
            var info = await ReadAsync<ReservationInfo>(response, cancellationToken).ConfigureAwait(false);
            activity?.SetTag("billing.reservation_id", info.ReservationId);
            Tag(activity, "reserved", null);
            return new Reservation(this, info);
        }
        catch (BillingApiException ex)
        {
            ex.IdempotencyKey ??= key; // retried with it, a reservation that did land is the same one (not a second hold)
            throw;
        }
    }

    /// <summary>Commits <paramref name="quantity"/> of a reservation by id (see <see cref="Reservation.CommitAsync"/>).</summary>
    public Task<ReservationSettlement> CommitReservationAsync(string reservationId, long quantity, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(quantity);
        return SettleAsync(reservationId, "commit", new { quantity }, "reservation_committed", cancellationToken);
    }

    /// <summary>Releases a reservation by id (see <see cref="Reservation.ReleaseAsync"/>).</summary>
    public Task<ReservationSettlement> ReleaseReservationAsync(string reservationId, CancellationToken cancellationToken = default) =>
        SettleAsync(reservationId, "release", new { }, "reservation_released", cancellationToken);

    /// <summary><c>GET /api/entitlements/{userId}</c> with the service token: plan, features, limits and meters of any user.</summary>
    public async Task<Entitlements> GetEntitlementsAsync(string userId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(userId);
        using var activity = BillingClientTelemetry.Source.StartActivity("billing entitlements", ActivityKind.Client);
        using var response = await SendAsync(HttpMethod.Get, "api/entitlements/" + Uri.EscapeDataString(userId), null, cancellationToken).ConfigureAwait(false);
        await EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
        return await ReadAsync<Entitlements>(response, cancellationToken).ConfigureAwait(false);
    }

    /// <summary><c>GET /api/usage/me</c> with a user's own token (not the service token): their meters and token balance.</summary>
    public async Task<UsageSnapshot> GetUsageAsync(string userToken, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(userToken);
        using var activity = BillingClientTelemetry.Source.StartActivity("billing usage", ActivityKind.Client);
        using var response = await SendAsync(HttpMethod.Get, "api/usage/me", null, cancellationToken, userToken).ConfigureAwait(false);
        await EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
        return await ReadAsync<UsageSnapshot>(response, cancellationToken).ConfigureAwait(false);
    }

    private async Task<ReservationSettlement> SettleAsync(string reservationId, string action, object body, string doneCode, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reservationId);
        using var activity = BillingClientTelemetry.Source.StartActivity("billing reservation " + action, ActivityKind.Client);
        activity?.SetTag("billing.reservation_id", reservationId);
        var attempts = 0;
        using var response = await SendAsync(HttpMethod.Post, $"api/usage/reservations/{Uri.EscapeDataString(reservationId)}/{action}", body,
            cancellationToken, onAttempt: () => attempts++).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.Conflict && attempts > 1)
        {
            // An earlier attempt did settle it and only its answer was lost: the retry's "already committed/released" is success.
            var problem = await ReadProblemAsync(response, cancellationToken).ConfigureAwait(false);
            if (problem.Code == doneCode)
            {
                return new ReservationSettlement(reservationId, 0, 0, null);
            }
            throw new BillingApiException(response.StatusCode, problem.Code, problem.Message);
        }
        await EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
        return await ReadAsync<ReservationSettlement>(response, cancellationToken).ConfigureAwait(false);
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, object? body, CancellationToken cancellationToken,
        string? bearer = null, Action? onAttempt = null)
    {
        // The body (and so the idempotency key) is made once; every attempt sends the same bytes.
        var payload = body is null ? null : JsonSerializer.SerializeToUtf8Bytes(body, Json);
        try
        {
            return await _pipeline.ExecuteAsync(async token =>
            {
                onAttempt?.Invoke();
                using var request = new HttpRequestMessage(method, path);
                if (payload is not null)
                {
                    request.Content = new ByteArrayContent(payload);
                    request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
                }
                request.Headers.Accept.ParseAdd("application/json");
                var token2 = bearer ?? (_options.TokenProvider is null ? null : await _options.TokenProvider(token).ConfigureAwait(false));
                if (!string.IsNullOrEmpty(token2))
                {
                    request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token2);
                }
                return await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, token).ConfigureAwait(false);
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpRequestException or TimeoutRejectedException
                                   || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            throw new BillingUnavailableException(null, null, $"Billing did not answer {method} /{path} after {_options.MaxRetries + 1} attempt(s): {ex.Message}", ex);
        }
    }

    private static ResiliencePipeline<HttpResponseMessage> BuildPipeline(BillingClientOptions options)
    {
        var builder = new ResiliencePipelineBuilder<HttpResponseMessage>();
        if (options.MaxRetries > 0)
        {
            builder.AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                MaxRetryAttempts = options.MaxRetries,
                Delay = options.RetryDelay,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                    .Handle<HttpRequestException>()
                    .Handle<TimeoutRejectedException>()
                    .HandleResult(r => IsTransient(r.StatusCode)),
                // A 429 or 503 that says when to come back is retried then, not on the back-off.
                DelayGenerator = args => ValueTask.FromResult(RetryAfter(args.Outcome.Result, options.MaxRetryAfter)),
                OnRetry = args =>
                {
                    Activity.Current?.AddEvent(new ActivityEvent("billing.retry", tags: new ActivityTagsCollection
                    {
                        ["billing.attempt"] = args.AttemptNumber + 1,
                        ["http.response.status_code"] = (int?)args.Outcome.Result?.StatusCode,
                        ["exception.type"] = args.Outcome.Exception?.GetType().FullName,
                    }));
                    return ValueTask.CompletedTask;
                },
            });
        }
        builder.AddTimeout(options.AttemptTimeout);
        return builder.Build();
    }

    private static TimeSpan? RetryAfter(HttpResponseMessage? response, TimeSpan max)
    {
        var header = response?.Headers.RetryAfter;
        var wait = header?.Delta ?? (header?.Date is { } at ? at - DateTimeOffset.UtcNow : null);
        return wait is { } w && w > TimeSpan.Zero ? (w < max ? w : max) : null;
    }

    private static bool IsTransient(HttpStatusCode status) =>
        (int)status >= 500 || status is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests;

    private static Activity? StartActivity(string name, string meter, long quantity, string key)
    {
        var activity = BillingClientTelemetry.Source.StartActivity(name, ActivityKind.Client);
        activity?.SetTag("billing.meter", meter);
        activity?.SetTag("billing.quantity", quantity);
        activity?.SetTag("billing.idempotency_key", key);
        return activity;
    }

    private static void Tag(Activity? activity, string outcome, string? code)
    {
        activity?.SetTag("billing.outcome", outcome);
        if (code is not null)
        {
            activity?.SetTag("billing.code", code);
        }
    }

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, CancellationToken cancellationToken) =>
        await response.Content.ReadFromJsonAsync<T>(Json, cancellationToken).ConfigureAwait(false)
        ?? throw new BillingApiException(response.StatusCode, null, "Billing answered an empty body.");

    private static async Task EnsureSuccessAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }
        var problem = await ReadProblemAsync(response, cancellationToken).ConfigureAwait(false);
        var message = $"Billing answered {(int)response.StatusCode} {problem.Code ?? response.ReasonPhrase}: {problem.Message}";
        throw IsTransient(response.StatusCode)
            ? new BillingUnavailableException(response.StatusCode, problem.Code, message)
            : new BillingApiException(response.StatusCode, problem.Code, message);
    }

    private static async Task<(string? Code, string Message)> ReadProblemAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var json = JsonDocument.Parse(text);
            var root = json.RootElement;
            var code = Str(root, "code") ?? Str(root, "type");
            var message = Str(root, "detail") ?? Str(root, "title") ?? text;
            return (code, message);
        }
        catch (JsonException)
        {
            return (null, text.Length > 300 ? text[..300] : text);
        }
    }

    private static async Task<BillingRefusal> ReadRefusalAsync(HttpResponseMessage response, string meter, CancellationToken cancellationToken)
    {
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false));
        var root = json.RootElement;
        return new BillingRefusal(
            Str(root, "code") ?? "payment_required",
            Str(root, "meter") ?? meter,
            Long(root, "limit"),
            root.TryGetProperty("resetsAt", out var r) && r.ValueKind == JsonValueKind.String && r.TryGetDateTimeOffset(out var at) ? at : null,
            root.TryGetProperty("upgrade", out var u) && u.ValueKind == JsonValueKind.True,
            Str(root, "title"),
            Str(root, "detail"),
            Long(root, "balance"),
            Long(root, "requested"));
    }

    private static string? Str(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static long? Long(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt64() : null;
}
