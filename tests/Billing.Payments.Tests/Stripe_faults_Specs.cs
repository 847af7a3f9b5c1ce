using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Billing.Payments.Tests;

/// <summary>
/// ARCHITECTURE.md rules 1 and 5 with Stripe misbehaving: the webhook is acknowledged as soon as it is stored, whatever
/// Stripe's API does while Payments re-reads the object; failed attempts are recorded and retried with back-off; an outage
/// (5xx, timeouts, 429) is waited out however long it lasts, while an event that keeps failing for another reason is parked
/// as <c>failed</c> for an admin to replay; and when Stripe answers again the event is processed exactly once. The real Payments API on PostgreSQL and RabbitMQ; Stripe's API is WireMock.
/// </summary>
[TestFixture]
[NonParallelizable]
public class When_Stripe_misbehaves_while_a_webhook_is_processed
{
    private FakeStripe _stripe = null!;
    private PublishedEvents _published = null!;
    private PaymentsHost _host = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _stripe = new FakeStripe();
        _published = await PublishedEvents.StartAsync();
        _host = new PaymentsHost(_stripe.Url);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await _host.DisposeAsync();
        await _published.DisposeAsync();
        _stripe.Dispose();
    }

    private static (string SubscriptionId, string UserId, string EventId) NewIds()
    {
        var n = Guid.NewGuid().ToString("N")[..14];
        return ("sub_" + n, "u-" + n, "evt_" + n);
    }

    [Test]
    public async Task A_re_read_failing_with_500_then_a_timeout_then_429_is_acknowledged_at_once_and_processed_once_when_Stripe_recovers()
    {
        var (subscriptionId, userId, eventId) = NewIds();
        var subscription = FakeStripe.ActiveSubscription(subscriptionId, userId, "cus_" + subscriptionId[4..]);
        // STRIPE_RETRIES=1: each processing attempt calls Stripe twice (the Polly retry), so each fault is answered twice.
        _stripe.Subscription(subscription, StripeAnswer.Ok,
            StripeAnswer.ServerError, StripeAnswer.ServerError, StripeAnswer.Timeout, StripeAnswer.Timeout,
            StripeAnswer.TooManyRequests, StripeAnswer.TooManyRequests);
        var body = FakeStripe.UpdatedEvent(eventId, subscription);

        var (status, answer, took) = await _host.SendWebhookAsync(body);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        Assert.That(took, Is.LessThan(TimeSpan.FromSeconds(1)), "acknowledged once stored, not after talking to Stripe");
        Assert.That(JsonDocument.Parse(answer).RootElement.GetProperty("processing").GetString(), Is.EqualTo("queued"));

        // While Stripe fails, the event stays pending, with its attempts and the last error; nothing is published.
        var errors = new List<string>();
        var pending = await PaymentsHost.EventuallyAsync(async () =>
            {
                var e = await _host.StoredEventAsync(eventId);
                if (e is { } row && row.GetProperty("status").GetString() == "pending" && row.GetProperty("lastError").GetString() is { } error
                    && !errors.Contains(error))
                {
                    errors.Add(error);
                }
                return e;
            },
            e => e?.GetProperty("status").GetString() != "pending", "the event to leave 'pending'", TimeSpan.FromSeconds(40));

        Assert.That(errors, Has.Count.EqualTo(3), "one recorded error per failed attempt: " + string.Join(" | ", errors));
        Assert.That(errors[0], Does.Contain("unknown error"), "the 500");
        Assert.That(errors[1], Does.Contain("Timeout").Or.Contain("timed out").Or.Contain("canceled"), "the timeout");
        Assert.That(errors[2], Does.Contain("Too many requests"), "the 429");

        var done = pending!.Value;
        Assert.That(done.GetProperty("status").GetString(), Is.EqualTo("processed"));
        Assert.That(done.GetProperty("attempts").GetInt32(), Is.EqualTo(4), "three failed attempts and the one that worked");
        Assert.That(done.GetProperty("lastError").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(_stripe.Requests("/v1/subscriptions/" + subscriptionId), Is.EqualTo(7));

        // A late duplicate delivery is acknowledged and changes nothing.
        var (again, againBody, _) = await _host.SendWebhookAsync(body);
        Assert.That(again, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(JsonDocument.Parse(againBody).RootElement.GetProperty("duplicate").GetBoolean(), Is.True);

        await PaymentsHost.EventuallyAsync(() => Task.FromResult(_published.About(subscriptionId)), s => s.Count > 0, "SubscriptionActivated on the bus");
        await Task.Delay(1500); // room for a second publication, if there were one
        Assert.That(_published.About(subscriptionId), Is.EqualTo(new[] { "SubscriptionActivated" }), "published exactly once");
        Assert.That(await PaymentsHost.ScalarAsync("SELECT count(*) FROM outbox WHERE payload->>'subscriptionId' = @s", new { s = subscriptionId }), Is.EqualTo(1));
    }

    [Test]
    public async Task An_event_that_keeps_failing_ends_failed_is_listed_and_a_replay_processes_it_once_Stripe_answers()
    {
        var (subscriptionId, userId, eventId) = NewIds();
        var subscription = FakeStripe.ActiveSubscription(subscriptionId, userId, "cus_" + subscriptionId[4..]);
        var path = "/v1/subscriptions/" + subscriptionId;
        // An answer that is not Stripe's (a 200 HTML page): no retry at once, and not an outage that waits it out.
        _stripe.Subscription(subscription, StripeAnswer.Html);

        var (status, answer, _) = await _host.SendWebhookAsync(FakeStripe.UpdatedEvent(eventId, subscription));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);

        var failed = await PaymentsHost.EventuallyAsync(() => _host.StoredEventAsync(eventId, "failed"), e => e is not null,
            "the event to be listed by ?status=failed", TimeSpan.FromSeconds(40));
        Assert.That(failed!.Value.GetProperty("attempts").GetInt32(), Is.EqualTo(PaymentsHost.MaxAttempts));
        Assert.That(failed.Value.GetProperty("lastError").GetString(), Does.Contain("Invalid response object from API"));
        Assert.That(_stripe.Requests(path), Is.EqualTo(PaymentsHost.MaxAttempts), "one call per attempt: a malformed answer is not retried at once");

        // Stripe recovers, but a failed event waits for an admin: nothing happens by itself.
        _stripe.Steady(path, StripeAnswer.Ok);
        await Task.Delay(1500);
        Assert.That((await _host.StoredEventAsync(eventId))!.Value.GetProperty("status").GetString(), Is.EqualTo("failed"));
        Assert.That(_published.About(subscriptionId), Is.Empty);

        var replay = await _host.Admin.PostAsync($"/api/admin/webhook-events/{eventId}/replay", null);
        Assert.That(replay.StatusCode, Is.EqualTo(HttpStatusCode.OK), await replay.Content.ReadAsStringAsync());
        var processed = await PaymentsHost.EventuallyAsync(() => _host.StoredEventAsync(eventId),
            e => e?.GetProperty("status").GetString() == "processed", "the replayed event to be processed");
        Assert.That(processed!.Value.GetProperty("source").GetString(), Is.EqualTo("replay"));
        Assert.That(await _host.StoredEventAsync(eventId, "failed"), Is.Null, "no longer listed as failed");

        await PaymentsHost.EventuallyAsync(() => Task.FromResult(_published.About(subscriptionId)), s => s.Count > 0, "SubscriptionActivated on the bus");
        await Task.Delay(1500);
        Assert.That(_published.About(subscriptionId), Is.EqualTo(new[] { "SubscriptionActivated" }), "published exactly once");

        var unknown = await _host.Admin.PostAsync("/api/admin/webhook-events/evt_nobody_knows/replay", null);
        Assert.That(unknown.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task An_outage_longer_than_the_attempts_keeps_the_event_pending_and_it_is_processed_when_Stripe_returns()
    {
        var (subscriptionId, userId, eventId) = NewIds();
        var subscription = FakeStripe.ActiveSubscription(subscriptionId, userId, "cus_" + subscriptionId[4..]);
        var path = "/v1/subscriptions/" + subscriptionId;
        // Two more failed attempts than MaxAttempts, each attempt two calls (one Polly retry), then Stripe is back.
        var outageAttempts = PaymentsHost.MaxAttempts + 2;
        _stripe.Subscription(subscription, StripeAnswer.Ok, Enumerable.Repeat(StripeAnswer.ServerError, 2 * outageAttempts).ToArray());

        var (status, answer, _) = await _host.SendWebhookAsync(FakeStripe.UpdatedEvent(eventId, subscription));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);

        var seen = new List<(string Status, int Attempts, string? LastError)>();
        var done = await PaymentsHost.EventuallyAsync(async () =>
            {
                var e = await _host.StoredEventAsync(eventId);
                if (e is { } row)
                {
                    seen.Add((row.GetProperty("status").GetString()!, row.GetProperty("attempts").GetInt32(), row.GetProperty("lastError").GetString()));
                }
                return e;
            },
            e => e?.GetProperty("status").GetString() is "processed" or "failed", "the event to be processed", TimeSpan.FromSeconds(40));

        Assert.That(done!.Value.GetProperty("status").GetString(), Is.EqualTo("processed"), "an outage never parks the event; no replay needed");
        Assert.That(done.Value.GetProperty("attempts").GetInt32(), Is.EqualTo(outageAttempts + 1));
        Assert.That(seen.Where(s => s.Status == "failed"), Is.Empty);
        Assert.That(seen.Any(s => s.Status == "pending" && s.Attempts >= PaymentsHost.MaxAttempts && s.LastError?.Contains("unknown error") == true),
            Is.True, "during the outage an admin sees the event pending with its attempts and Stripe's error");
        Assert.That(_stripe.Requests(path), Is.EqualTo(2 * outageAttempts + 1));

        await PaymentsHost.EventuallyAsync(() => Task.FromResult(_published.About(subscriptionId)), s => s.Count > 0, "SubscriptionActivated on the bus");
        await Task.Delay(1000);
        Assert.That(_published.About(subscriptionId), Is.EqualTo(new[] { "SubscriptionActivated" }), "published exactly once");
    }

    [Test]
    public async Task A_failure_recorded_after_the_event_was_committed_as_processed_leaves_it_processed()
    {
        var (subscriptionId, userId, eventId) = NewIds();
        var subscription = FakeStripe.ActiveSubscription(subscriptionId, userId, "cus_" + subscriptionId[4..]);
        _stripe.Subscription(subscription, StripeAnswer.Ok);
        var (status, answer, _) = await _host.SendWebhookAsync(FakeStripe.UpdatedEvent(eventId, subscription));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        var processed = await PaymentsHost.EventuallyAsync(() => _host.StoredEventAsync(eventId),
            e => e?.GetProperty("status").GetString() == "processed", "the event to be processed");

        // CommitAsync threw although the server committed (the connection broke on the way back): the processor records
        // a failure, as many times as it would take to park the event.
        var processor = _host.Services.GetServices<IHostedService>().OfType<Billing.Payments.Api.Webhooks.WebhookProcessor>().Single();
        for (var i = 0; i < PaymentsHost.MaxAttempts; i++)
        {
            await processor.RecordFailureAsync(eventId, new InvalidOperationException("commit answer lost"), CancellationToken.None);
        }

        var after = (await _host.StoredEventAsync(eventId))!.Value;
        Assert.That(after.GetProperty("status").GetString(), Is.EqualTo("processed"));
        Assert.That(after.GetProperty("attempts").GetInt32(), Is.EqualTo(processed!.Value.GetProperty("attempts").GetInt32()));
        Assert.That(after.GetProperty("lastError").ValueKind, Is.EqualTo(JsonValueKind.Null));
    }

    [Test]
    public async Task Malformed_answers_from_Stripe_count_as_failed_attempts_and_the_service_keeps_serving()
    {
        var (subscriptionId, userId, eventId) = NewIds();
        var subscription = FakeStripe.ActiveSubscription(subscriptionId, userId, "cus_" + subscriptionId[4..]);
        var path = "/v1/subscriptions/" + subscriptionId;
        _stripe.Subscription(subscription, StripeAnswer.Ok, StripeAnswer.Html, StripeAnswer.TruncatedJson);

        var (status, answer, took) = await _host.SendWebhookAsync(FakeStripe.UpdatedEvent(eventId, subscription));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        Assert.That(took, Is.LessThan(TimeSpan.FromSeconds(1)));

        var errors = new List<string>();
        var done = await PaymentsHost.EventuallyAsync(async () =>
            {
                var e = await _host.StoredEventAsync(eventId);
                if (e?.GetProperty("lastError").GetString() is { } error && !errors.Contains(error))
                {
                    errors.Add(error);
                }
                return e;
            },
            e => e?.GetProperty("status").GetString() == "processed", "the event to be processed once Stripe answers JSON", TimeSpan.FromSeconds(40));

        TestContext.Progress.WriteLine("malformed answers recorded as: " + string.Join(" | ", errors));
        Assert.That(errors, Has.Count.EqualTo(2), "each malformed answer is one failed attempt with its error: " + string.Join(" | ", errors));
        Assert.That(done!.Value.GetProperty("attempts").GetInt32(), Is.EqualTo(3));
        Assert.That(_stripe.Requests(path), Is.EqualTo(3), "a malformed 200 is not retried at once, the next attempt reads again");
        Assert.That((await _host.Admin.GetAsync("/health/live")).StatusCode, Is.EqualTo(HttpStatusCode.OK));

        await PaymentsHost.EventuallyAsync(() => Task.FromResult(_published.About(subscriptionId)), s => s.Count > 0, "SubscriptionActivated on the bus");
        await Task.Delay(1000);
        Assert.That(_published.About(subscriptionId), Is.EqualTo(new[] { "SubscriptionActivated" }));
    }

    [Test]
    public async Task An_HTML_error_page_from_a_proxy_is_retried_like_any_5xx()
    {
        var (subscriptionId, userId, eventId) = NewIds();
        var subscription = FakeStripe.ActiveSubscription(subscriptionId, userId, "cus_" + subscriptionId[4..]);
        var path = "/v1/subscriptions/" + subscriptionId;
        _stripe.Subscription(subscription, StripeAnswer.Ok, StripeAnswer.BadGatewayHtml);

        var (status, _, _) = await _host.SendWebhookAsync(FakeStripe.UpdatedEvent(eventId, subscription));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));

        var done = await PaymentsHost.EventuallyAsync(() => _host.StoredEventAsync(eventId),
            e => e?.GetProperty("status").GetString() is "processed" or "failed", "the event to be processed", TimeSpan.FromSeconds(40));
        Assert.That(done!.Value.GetProperty("status").GetString(), Is.EqualTo("processed"));
        // 502 is transient: the Polly retry inside the first attempt reads the object, so one attempt is enough.
        Assert.That(_stripe.Requests(path), Is.EqualTo(2));
        Assert.That(done.Value.GetProperty("attempts").GetInt32(), Is.EqualTo(1), "the 502 with an HTML body was retried at once by the Polly pipeline");
        await PaymentsHost.EventuallyAsync(() => Task.FromResult(_published.About(subscriptionId)), s => s.Count > 0, "SubscriptionActivated on the bus");
    }
}
