using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;

namespace Billing.EndToEnd.Tests;

/// <summary>
/// A few thousand random and mutated JSON bodies (and query strings) at every endpoint, through the gateway, with the
/// token each endpoint expects: never a 5xx, and no account changes. Seeded, so a failure can be replayed.
/// </summary>
[TestFixture]
[NonParallelizable]
public class Fuzzing_every_endpoint
{
    private const int Seed = 20261124;
    private const int BodiesPerEndpoint = 150;

    private sealed record Endpoint(string Method, string Path, string Auth, string? Template);

    private static readonly Endpoint[] Endpoints =
    [
        new("POST", "/api/subscriptions/checkout", "user", """{"planId":"pro","interval":"month","intervalCount":1,"successUrl":"https://app.example.com/ok","cancelUrl":"https://app.example.com/no"}"""),
        new("POST", "/api/subscriptions/me/cancel", "user", "{}"),
        new("POST", "/api/subscriptions/me/resume", "user", "{}"),
        new("POST", "/api/subscriptions/me/change", "user", """{"planId":"pro","interval":"year","intervalCount":1}"""),
        new("POST", "/api/billing-portal", "user", """{"returnUrl":"https://app.example.com/account"}"""),
        new("POST", "/api/wallet/checkout", "user", """{"packId":"starter","successUrl":"https://app.example.com/ok","cancelUrl":"https://app.example.com/no"}"""),
        new("POST", "/api/usage/consume", "service", """{"userId":"USER","meter":"ai.generation","quantity":1,"idempotencyKey":"KEY","groups":["g1"]}"""),
        new("POST", "/api/usage/reservations", "service", """{"userId":"USER","meter":"ai.generation","quantity":3,"idempotencyKey":"KEY","ttlSeconds":60}"""),
        new("POST", "/api/usage/reservations/res_FUZZ/commit", "service", """{"quantity":1}"""),
        new("POST", "/api/usage/reservations/res_FUZZ/release", "service", "{}"),
        new("POST", "/api/admin/refunds", "admin", """{"paymentId":"in_fuzz_missing","amount":100,"reason":"requested_by_customer","force":false}"""),
        new("POST", "/webhooks/stripe", "none", """{"id":"evt_fuzz","object":"event","api_version":"2026-10-28.endive","created":1,"data":{"object":{"id":"in_x","object":"invoice"}},"type":"invoice.paid"}"""),
        new("GET", "/api/subscriptions/me/history?limit=Q", "user", null),
        new("GET", "/api/subscriptions/me/change-preview?planId=Q&interval=Q", "user", null),
        new("GET", "/api/usage/me/history?from=Q&to=Q&granularity=Q", "user", null),
        new("GET", "/api/wallet/me/transactions?limit=Q&cursor=Q", "user", null),
        new("GET", "/api/entitlements/Q", "service", null),
        new("GET", "/api/admin/webhook-events?status=Q&limit=Q", "admin", null),
        new("POST", "/api/admin/webhook-events/Q/replay", "admin", null),
    ];

    private static readonly JsonNode?[] Weird =
    [
        null, true, false, 0, -1, 1, long.MaxValue, long.MinValue, 1e300, -0.5, "", " ", "0", "-1", "null", "true",
        "' OR 1=1 --", "\"; DROP TABLE outbox; --", "{\"$gt\":\"\"}", "\u0000", "\ud83d\ude00", new string('x', 5000),
        "../../etc/passwd", "<img src=x onerror=alert(1)>", "1e309", "9999999999999999999999", "pro\u0000", "PRO", " pro ",
        new JsonArray(), new JsonArray(1, "a", null), new JsonObject(), new JsonObject { ["a"] = new JsonObject { ["b"] = 1 } },
    ];

    [Test]
    public async Task Thousands_of_random_and_mutated_bodies_never_cause_a_5xx_or_change_an_account()
    {
        var random = new Random(Seed);
        var users = Enumerable.Range(0, 40).Select(i => $"e2e-fuzz-{i}-{Guid.NewGuid().ToString("N")[..6]}").ToArray();
        var victim = await AccountSnapshot.NewVictimAsync("e2e-fuzz-victim");
        var watched = users.Take(5).Append(victim).ToArray();
        var before = new Dictionary<string, string>();
        foreach (var user in watched)
        {
            before[user] = await AccountSnapshot.TakeAsync(user);
        }

        var requests = new List<(Endpoint Endpoint, string Path, string? Body, string? Token)>();
        foreach (var endpoint in Endpoints)
        {
            for (var i = 0; i < BodiesPerEndpoint; i++)
            {
                var user = users[random.Next(users.Length)];
                var token = endpoint.Auth switch
                {
                    "user" => Tokens.User(user),
                    "service" => Tokens.Service(),
                    // Refunds are limited per admin: spread over several admin identities.
                    "admin" => Tokens.Create("e2e-fuzz-admin-" + random.Next(40), scope: "billing.admin"),
                    _ => null,
                };
                var path = endpoint.Path.Replace("res_FUZZ", "res_" + Guid.NewGuid().ToString("N"));
                while (path.Contains("=Q") || path.Contains("/Q"))
                {
                    var index = path.Contains("=Q") ? path.IndexOf("=Q", StringComparison.Ordinal) + 1 : path.IndexOf("/Q", StringComparison.Ordinal) + 1;
                    path = path[..index] + Uri.EscapeDataString(RandomScalar(random)) + path[(index + 1)..];
                }
                var body = endpoint.Template is null ? null : Mutate(endpoint.Template.Replace("USER", user).Replace("KEY", "fuzz-" + Guid.NewGuid()), random);
                requests.Add((endpoint, path, body, token));
            }
        }

        var failures = new ConcurrentBag<string>();
        var statuses = new ConcurrentDictionary<int, int>();
        using var http = new HttpClient { BaseAddress = TestEnvironment.GatewayUrl, Timeout = TimeSpan.FromSeconds(30) };
        var started = DateTime.UtcNow;
        await Parallel.ForEachAsync(requests, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (r, ct) =>
        {
            if (DateTime.UtcNow - started > TimeSpan.FromMinutes(2))
            {
                return; // bounded in time as well as in count
            }
            using var request = new HttpRequestMessage(new HttpMethod(r.Endpoint.Method), r.Path);
            if (r.Token is not null)
            {
                request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", r.Token);
            }
            if (r.Body is not null)
            {
                request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(r.Body));
                request.Content.Headers.TryAddWithoutValidation("Content-Type", "application/json");
            }
            if (r.Endpoint.Path == "/webhooks/stripe" && r.Body is not null)
            {
                // Unsigned, signed with another secret, or a stale signature: never stored.
                var choice = Random.Shared.Next(3);
                if (choice > 0)
                {
                    request.Headers.TryAddWithoutValidation("Stripe-Signature", choice == 1
                        ? StripeSignatures.Header(r.Body, secret: "whsec_fuzz_wrong")
                        : StripeSignatures.Header(r.Body, at: DateTimeOffset.UtcNow.AddHours(-1)));
                }
            }
            using var response = await http.SendAsync(request, ct);
            statuses.AddOrUpdate((int)response.StatusCode, 1, (_, n) => n + 1);
            if ((int)response.StatusCode >= 500)
            {
                var text = await response.Content.ReadAsStringAsync(ct);
                failures.Add($"{(int)response.StatusCode} {r.Endpoint.Method} {r.Path} body={Trim(r.Body)} answer={Trim(text)}");
            }
        });

        var total = statuses.Values.Sum();
        TestContext.Out.WriteLine($"{total} requests in {(DateTime.UtcNow - started).TotalSeconds:F1} s: " +
            string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}×{s.Value}")));
        Assert.That(total, Is.GreaterThanOrEqualTo(2000), "a few thousand requests ran");
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)));
        foreach (var user in watched)
        {
            Assert.That(await AccountSnapshot.TakeAsync(user), Is.EqualTo(before[user]), user);
        }
    }

    private static string Trim(string? s) => s is null ? "" : s.Length > 200 ? s[..200] + "…" : s;

    private static string RandomScalar(Random random) => random.Next(6) switch
    {
        0 => random.Next(-5, 1000).ToString(System.Globalization.CultureInfo.InvariantCulture),
        1 => Guid.NewGuid().ToString(),
        2 => "' OR '1'='1",
        3 => new string((char)random.Next(32, 127), random.Next(1, 300)),
        4 => "2026-13-45T99:99:99Z",
        _ => Weird[random.Next(Weird.Length)]?.ToJsonString() ?? "",
    };

    /// <summary>One of: a structural mutation of the valid template, a random JSON document, or broken bytes.</summary>
    private static string Mutate(string template, Random random)
    {
        var node = JsonNode.Parse(template)!;
        switch (random.Next(10))
        {
            case 0:
                return RandomJson(random, 0)?.ToJsonString() ?? "null";
            case 1:
                // Truncated at a random point.
                return template[..random.Next(template.Length)];
            case 2:
            {
                var chars = template.ToCharArray();
                for (var i = 0; i < 1 + random.Next(3); i++)
                {
                    const string Breakers = "{}[]\",:\\0aZ \u0000";
                    chars[random.Next(chars.Length)] = Breakers[random.Next(Breakers.Length)];
                }
                return new string(chars);
            }
            case 3:
                return new string('[', random.Next(50, 2000)) + new string(']', random.Next(0, 50));
            default:
            {
                if (node is not JsonObject obj)
                {
                    return template;
                }
                var keys = obj.Select(p => p.Key).ToList();
                for (var m = 0; m < 1 + random.Next(3); m++)
                {
                    switch (random.Next(4))
                    {
                        case 0 when keys.Count > 0:
                            obj.Remove(keys[random.Next(keys.Count)]);
                            break;
                        case 1:
                            obj["extra" + random.Next(100)] = Clone(Weird[random.Next(Weird.Length)]);
                            break;
                        default:
                            if (keys.Count > 0)
                            {
                                obj[keys[random.Next(keys.Count)]] = Clone(Weird[random.Next(Weird.Length)]);
                            }
                            break;
                    }
                }
                var text = obj.ToJsonString();
                // Sometimes a duplicated key (last one wins, or a 400): a classic parser differential.
                return random.Next(8) == 0 && keys.Count > 0 ? text.TrimEnd('}') + $",\"{keys[0]}\":\"dup\"}}" : text;
            }
        }
    }

    private static JsonNode? Clone(JsonNode? node) => node?.DeepClone();

    private static JsonNode? RandomJson(Random random, int depth) => (depth > 3 ? random.Next(4) : random.Next(7)) switch
    {
        0 => null,
        1 => random.Next(2) == 0,
        2 => (JsonNode)(random.NextDouble() * Math.Pow(10, random.Next(-5, 30))),
        3 => RandomScalar(random),
        4 => new JsonArray(Enumerable.Range(0, random.Next(4)).Select(_ => RandomJson(random, depth + 1)).ToArray()),
        _ => new JsonObject(Enumerable.Range(0, random.Next(5)).Select(i => KeyValuePair.Create(
            new[] { "userId", "planId", "interval", "meter", "quantity", "idempotencyKey", "packId", "paymentId", "amount", "x" }[random.Next(10)] + (i > 4 ? i.ToString(System.Globalization.CultureInfo.InvariantCulture) : ""),
            RandomJson(random, depth + 1))).DistinctBy(kv => kv.Key)),
    };
}
