using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using WireMock;
using WireMock.Matchers;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;
using WireMock.Types;
using WireMock.Util;

namespace Billing.Payments.Tests;

/// <summary>What Stripe's API does to one request.</summary>
public enum StripeAnswer
{
    /// <summary>200 with the object in Stripe's shape.</summary>
    Ok,
    /// <summary>500 with Stripe's error body.</summary>
    ServerError,
    /// <summary>No answer for longer than the client waits.</summary>
    Timeout,
    /// <summary>429 rate limited, Stripe's error body.</summary>
    TooManyRequests,
    /// <summary>200, but an HTML page (a captive proxy, a misrouted load balancer).</summary>
    Html,
    /// <summary>502 with an HTML page, as a proxy in front of Stripe answers.</summary>
    BadGatewayHtml,
    /// <summary>200 with JSON cut off in the middle.</summary>
    TruncatedJson,
}

/// <summary>
/// WireMock.Net as Stripe's API. Each object path (<c>/v1/subscriptions/sub_…</c>) gets a script: answers used one per
/// request, in order, and then a steady answer. Objects are rendered in Stripe's JSON (API version 2026-10-28.endive:
/// the period lives on the subscription items), as the simulator renders them.
/// </summary>
public sealed class FakeStripe : IDisposable
{
    /// <summary>How long a "timeout" keeps the caller waiting; the tests' Stripe client gives up well before.</summary>
    public static readonly TimeSpan Hang = TimeSpan.FromSeconds(4);

    private readonly WireMockServer _server;
    private readonly ConcurrentDictionary<string, ConcurrentQueue<StripeAnswer>> _scripts = new();
    private readonly ConcurrentDictionary<string, StripeAnswer> _steady = new();
    private readonly ConcurrentDictionary<string, JsonObject> _objects = new();
    private readonly ConcurrentDictionary<string, int> _requests = new();
    private readonly Dictionary<string, JsonObject> _refundsByKey = new(StringComparer.Ordinal);
    private readonly List<JsonObject> _refunds = [];

    public FakeStripe()
    {
        _server = WireMockServer.Start();
        _server.Given(Request.Create().WithPath(new RegexMatcher("^/.*$")).UsingAnyMethod())
            .RespondWith(Response.Create().WithCallback(Answer));
    }

    public string Url => _server.Url!.TrimEnd('/');

    /// <summary>Registers a subscription Stripe knows; it answers <paramref name="steady"/> after the scripted answers.</summary>
    public void Subscription(JsonObject subscription, StripeAnswer steady, params StripeAnswer[] script)
    {
        var path = "/v1/subscriptions/" + subscription["id"]!.GetValue<string>();
        _objects[path] = subscription;
        _steady[path] = steady;
        _scripts[path] = new ConcurrentQueue<StripeAnswer>(script);
    }

    /// <summary>Registers any object Stripe knows at <paramref name="path"/> (<c>/v1/charges/ch_…</c>); it answers 200.</summary>
    public void Object(string path, JsonObject body) => _objects[path] = body;

    /// <summary>The object Stripe holds at <paramref name="path"/> now (refunds change their charge).</summary>
    public JsonObject ObjectAt(string path) => _objects[path];

    /// <summary>The refunds Stripe made (a request repeated with its idempotency key makes none).</summary>
    public IReadOnlyList<JsonObject> Refunds
    {
        get
        {
            lock (_refunds)
            {
                return _refunds.Select(r => r.DeepClone().AsObject()).ToList();
            }
        }
    }

    /// <summary>Stripe keeps an idempotency key for 24 hours: forgets every key seen so far, as a day later.</summary>
    public void ForgetIdempotencyKeys()
    {
        lock (_refunds)
        {
            _refundsByKey.Clear();
        }
    }

    /// <summary>From now on the object answers <paramref name="steady"/> (Stripe recovered, or broke).</summary>
    public void Steady(string path, StripeAnswer steady) => _steady[path] = steady;

    /// <summary>How many requests reached <paramref name="path"/>.</summary>
    public int Requests(string path) => _requests.GetValueOrDefault(path);

    private ResponseMessage Answer(IRequestMessage request)
    {
        var path = request.Path;
        _requests.AddOrUpdate(path, 1, (_, n) => n + 1);
        if (path == "/v1/refunds" && request.Method == "POST")
        {
            return CreateRefund(request);
        }
        if (path == "/v1/refunds" && request.Method == "GET")
        {
            var query = request.Query ?? new Dictionary<string, WireMockList<string>>();
            var pi = query.TryGetValue("payment_intent", out var p) ? p.FirstOrDefault() : null;
            var ch = query.TryGetValue("charge", out var c) ? c.FirstOrDefault() : null;
            lock (_refunds)
            {
                var data = new JsonArray(_refunds
                    .Where(r => (pi is null || r["payment_intent"]?.GetValue<string>() == pi) && (ch is null || r["charge"]?.GetValue<string>() == ch))
                    .Select(r => (JsonNode)r.DeepClone()).ToArray());
                return Reply(200, new JsonObject { ["object"] = "list", ["url"] = "/v1/refunds", ["has_more"] = false, ["data"] = data }.ToJsonString());
            }
        }
        if (!_objects.TryGetValue(path, out var body))
        {
            return Reply(404, """{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such object"}}""");
        }
        var answer = _scripts.TryGetValue(path, out var script) && script.TryDequeue(out var next) ? next : _steady.GetValueOrDefault(path, StripeAnswer.Ok);
        switch (answer)
        {
            case StripeAnswer.Ok:
                return Reply(200, body.ToJsonString());
            case StripeAnswer.ServerError:
                return Reply(500, """{"error":{"type":"api_error","message":"An unknown error occurred"}}""");
            case StripeAnswer.Timeout:
                Thread.Sleep(Hang); // WireMock's callback is synchronous
                return Reply(200, body.ToJsonString());
            case StripeAnswer.TooManyRequests:
                return Reply(429, """{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Too many requests hit the API too quickly."}}""");
            case StripeAnswer.Html:
                return Reply(200, "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Wi-Fi login</body></html>", "text/html");
            case StripeAnswer.BadGatewayHtml:
                return Reply(502, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>", "text/html");
            case StripeAnswer.TruncatedJson:
                var json = body.ToJsonString();
                return Reply(200, json[..(json.Length / 2)]);
            default:
                throw new ArgumentOutOfRangeException(nameof(answer), answer, null);
        }
    }

    /// <summary>
    /// <c>POST /v1/refunds</c> as Stripe does it: a request with an idempotency key seen before gets the first answer again
    /// and refunds nothing; a new key refunds from the charge of the payment intent (or the charge) named.
    /// </summary>
    private ResponseMessage CreateRefund(IRequestMessage request)
    {
        var form = System.Web.HttpUtility.ParseQueryString(request.Body ?? "");
        var key = request.Headers?.FirstOrDefault(h => string.Equals(h.Key, "Idempotency-Key", StringComparison.OrdinalIgnoreCase)).Value?.FirstOrDefault();
        lock (_refunds)
        {
            if (key is not null && _refundsByKey.TryGetValue(key, out var earlier))
            {
                return Reply(200, earlier.ToJsonString());
            }
            var charge = _objects.Values.FirstOrDefault(o => o["object"]?.GetValue<string>() == "charge"
                && ((form["payment_intent"] is { } pi && o["payment_intent"]?.GetValue<string>() == pi) || (form["charge"] is { } ch && o["id"]?.GetValue<string>() == ch)));
            if (charge is null)
            {
                return Reply(404, """{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such charge"}}""");
            }
            var amount = long.Parse(form["amount"] ?? charge["amount"]!.ToString(), System.Globalization.CultureInfo.InvariantCulture);
            var refunded = charge["amount_refunded"]!.GetValue<long>() + amount;
            if (refunded > charge["amount"]!.GetValue<long>())
            {
                return Reply(400, """{"error":{"type":"invalid_request_error","code":"charge_already_refunded","message":"Refund amount is greater than unrefunded amount on charge"}}""");
            }
            charge["amount_refunded"] = refunded;
            charge["refunded"] = refunded == charge["amount"]!.GetValue<long>();
            var refund = new JsonObject
            {
                ["id"] = "re_" + Guid.NewGuid().ToString("N")[..14], ["object"] = "refund", ["amount"] = amount, ["charge"] = charge["id"]!.GetValue<string>(),
                ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), ["currency"] = charge["currency"]!.GetValue<string>(),
                ["metadata"] = Metadata(form), ["payment_intent"] = charge["payment_intent"]?.GetValue<string>(), ["reason"] = form["reason"],
                ["status"] = "succeeded",
            };
            _refunds.Add(refund);
            if (Interlocked.Exchange(ref _loseRefundAnswers, 0) == 1)
            {
                // Made, but the answer is lost (and so is the key, as a day later): the caller cannot tell.
                _objects["/v1/refunds/" + refund["id"]!.GetValue<string>()] = refund;
                return Reply(400, """{"error":{"type":"invalid_request_error","message":"answer lost"}}""");
            }
            _objects["/v1/refunds/" + refund["id"]!.GetValue<string>()] = refund; // GET /v1/refunds/re_… reads it again
            if (key is not null)
            {
                _refundsByKey[key] = refund;
            }
            return Reply(200, refund.ToJsonString());
        }
    }

    /// <summary>The <c>metadata[key]=value</c> fields of a form-encoded request.</summary>
    private static JsonObject Metadata(System.Collections.Specialized.NameValueCollection form)
    {
        var metadata = new JsonObject();
        foreach (var key in form.AllKeys.OfType<string>().Where(k => k.StartsWith("metadata[", StringComparison.Ordinal) && k.EndsWith(']')))
        {
            metadata[key["metadata[".Length..^1]] = form[key];
        }
        return metadata;
    }

    /// <summary>Stripe made the refund but its answer never arrived: the request errs with a timeout-like 500.</summary>
    public void LoseNextRefundAnswer() => Interlocked.Exchange(ref _loseRefundAnswers, 1);

    private int _loseRefundAnswers;

    private static ResponseMessage Reply(int status, string body, string contentType = "application/json") => new()
    {
        StatusCode = status,
        Headers = new Dictionary<string, WireMockList<string>>
        {
            ["Content-Type"] = new(contentType),
            ["Request-Id"] = new("req_" + Guid.NewGuid().ToString("N")[..14]),
        },
        BodyData = new BodyData { BodyAsString = body, DetectedBodyType = BodyType.String, Encoding = System.Text.Encoding.UTF8 },
    };

    /// <summary>An active monthly Pro subscription in Stripe's shape (lookup key <c>pro_month</c> of the default catalog).</summary>
    public static JsonObject ActiveSubscription(string subscriptionId, string userId, string customerId)
    {
        var start = DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds();
        var end = DateTimeOffset.UtcNow.AddMinutes(-5).AddMonths(1).ToUnixTimeSeconds();
        var price = new JsonObject
        {
            ["id"] = "price_pro_month", ["object"] = "price", ["active"] = true, ["billing_scheme"] = "per_unit", ["created"] = start,
            ["currency"] = "usd", ["custom_unit_amount"] = null, ["livemode"] = false, ["lookup_key"] = "pro_month",
            ["metadata"] = new JsonObject { ["planId"] = "pro" }, ["nickname"] = null, ["product"] = "prod_pro",
            ["recurring"] = new JsonObject { ["interval"] = "month", ["interval_count"] = 1, ["meter"] = null, ["trial_period_days"] = null, ["usage_type"] = "licensed" },
            ["tax_behavior"] = "unspecified", ["tiers_mode"] = null, ["transform_quantity"] = null, ["type"] = "recurring",
            ["unit_amount"] = 500, ["unit_amount_decimal"] = "500",
        };
        var item = new JsonObject
        {
            ["id"] = "si_" + subscriptionId[4..], ["object"] = "subscription_item", ["billing_thresholds"] = null, ["created"] = start,
            ["current_period_end"] = end, ["current_period_start"] = start, ["discounts"] = new JsonArray(), ["metadata"] = new JsonObject(),
            ["price"] = price, ["quantity"] = 1, ["subscription"] = subscriptionId, ["tax_rates"] = new JsonArray(),
        };
        return new JsonObject
        {
            ["id"] = subscriptionId, ["object"] = "subscription", ["application"] = null, ["application_fee_percent"] = null,
            ["automatic_tax"] = new JsonObject { ["disabled_reason"] = null, ["enabled"] = false, ["liability"] = null },
            ["billing_cycle_anchor"] = start, ["billing_cycle_anchor_config"] = null,
            ["billing_mode"] = new JsonObject { ["type"] = "flexible", ["flexible"] = new JsonObject { ["proration_discounts"] = "included" }, ["updated_at"] = start },
            ["billing_thresholds"] = null, ["cancel_at"] = null, ["cancel_at_period_end"] = false, ["canceled_at"] = null,
            ["cancellation_details"] = new JsonObject { ["comment"] = null, ["feedback"] = null, ["reason"] = null },
            ["collection_method"] = "charge_automatically", ["created"] = start, ["currency"] = "usd", ["customer"] = customerId,
            ["days_until_due"] = null, ["default_payment_method"] = "pm_card_visa", ["default_source"] = null, ["default_tax_rates"] = new JsonArray(),
            ["description"] = null, ["discounts"] = new JsonArray(), ["ended_at"] = null,
            ["invoice_settings"] = new JsonObject { ["account_tax_ids"] = null, ["issuer"] = new JsonObject { ["type"] = "self" } },
            ["items"] = new JsonObject
            {
                ["object"] = "list", ["data"] = new JsonArray(item), ["has_more"] = false, ["url"] = "/v1/subscription_items?subscription=" + subscriptionId,
            },
            ["latest_invoice"] = "in_" + subscriptionId[4..], ["livemode"] = false,
            ["metadata"] = new JsonObject { ["userId"] = userId, ["planId"] = "pro" },
            ["next_pending_invoice_item_invoice"] = null, ["on_behalf_of"] = null, ["pause_collection"] = null,
            ["payment_settings"] = new JsonObject { ["payment_method_options"] = null, ["payment_method_types"] = null, ["save_default_payment_method"] = "off" },
            ["pending_invoice_item_interval"] = null, ["pending_setup_intent"] = null, ["pending_update"] = null, ["schedule"] = null,
            ["start_date"] = start, ["status"] = "active", ["test_clock"] = null, ["transfer_data"] = null, ["trial_end"] = null,
            ["trial_settings"] = new JsonObject { ["end_behavior"] = new JsonObject { ["missing_payment_method"] = "create_invoice" } },
            ["trial_start"] = null,
        };
    }

    /// <summary>An event of <paramref name="type"/> about <paramref name="obj"/> (its snapshot), as Stripe sends it.</summary>
    public static string Event(string eventId, string type, JsonObject obj, long? created = null) => new JsonObject
    {
        ["id"] = eventId, ["object"] = "event", ["api_version"] = "2026-10-28.endive", ["created"] = created ?? DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        ["data"] = new JsonObject { ["object"] = obj.DeepClone() }, ["livemode"] = false, ["pending_webhooks"] = 1,
        ["request"] = new JsonObject { ["id"] = null, ["idempotency_key"] = null }, ["type"] = type,
    }.ToJsonString();

    /// <summary>The <c>customer.subscription.updated</c> event Stripe sends about it (its snapshot is never trusted).</summary>
    public static string UpdatedEvent(string eventId, JsonObject subscription) => new JsonObject
    {
        ["id"] = eventId, ["object"] = "event", ["api_version"] = "2026-10-28.endive", ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        ["data"] = new JsonObject
        {
            ["object"] = subscription.DeepClone(),
            ["previous_attributes"] = new JsonObject { ["status"] = "incomplete" },
        },
        ["livemode"] = false, ["pending_webhooks"] = 1,
        ["request"] = new JsonObject { ["id"] = null, ["idempotency_key"] = null },
        ["type"] = "customer.subscription.updated",
    }.ToJsonString();

    public void Dispose() => _server.Stop();
}
