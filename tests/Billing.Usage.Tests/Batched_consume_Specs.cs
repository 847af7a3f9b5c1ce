using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Billing.ServiceDefaults;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;

namespace Billing.Usage.Tests;

/// <summary>
/// <c>POST /internal/usage/consume-batch</c>, as the gateway sends it: each consume is answered exactly as Usage answers
/// it sent alone — its own token and scope checked, its own body read, its own correlation id and trace — and a batch
/// spends each key once.
/// </summary>
[TestFixture]
public class A_batch_of_consumes_from_the_gateway
{
    private static UsageHost Host => Hosts.Default;

    private static BatchedRequest Item(string? token, string body, string? correlationId = null, string? traceparent = null,
        string contentType = "application/json")
    {
        var headers = new Dictionary<string, string> { ["Content-Type"] = contentType };
        if (token is not null)
        {
            headers["Authorization"] = "Bearer " + token;
        }
        if (correlationId is not null)
        {
            headers[CorrelationId.Header] = correlationId;
        }
        if (traceparent is not null)
        {
            headers["traceparent"] = traceparent;
        }
        return new BatchedRequest(headers, Encoding.UTF8.GetBytes(body));
    }

    private static string Consume(string user, string key, string meter = "ai.generation") =>
        JsonSerializer.Serialize(new { userId = user, meter, quantity = 1, idempotencyKey = key });

    /// <summary>Sends the batch without a token of its own (each item carries one).</summary>
    private static async Task<List<BatchedResponse>> SendAsync(IEnumerable<BatchedRequest> items)
    {
        using var client = Host.CreateClient();
        var response = await client.PostAsJsonAsync(ConsumeBatch.Path, items, ConsumeBatch.Json);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo(ConsumeBatch.AnswerContentType));
        // One line per answer, in the order the consumes were done.
        var lines = (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var answers = lines.Select(l => JsonSerializer.Deserialize<BatchedAnswer>(l, ConsumeBatch.Json)!).ToList();
        Assert.That(answers.Select(a => a.Index).Order(), Is.EqualTo(Enumerable.Range(0, items.Count())));
        return answers.OrderBy(a => a.Index).Select(a => a.Response).ToList();
    }

    /// <summary>The same consume sent alone, straight to <c>/api/usage/consume</c>.</summary>
    private static async Task<BatchedResponse> AloneAsync(BatchedRequest item)
    {
        using var client = Host.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, ConsumeBatch.ItemPath) { Content = new ByteArrayContent(item.Body) };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(item.Headers["Content-Type"]);
        if (item.Headers.TryGetValue("Authorization", out var auth))
        {
            request.Headers.TryAddWithoutValidation("Authorization", auth);
        }
        using var response = await client.SendAsync(request);
        var headers = new Dictionary<string, string>();
        if (response.Content.Headers.ContentType is { } type)
        {
            headers["Content-Type"] = type.ToString();
        }
        if (response.Headers.WwwAuthenticate.Count > 0)
        {
            headers["WWW-Authenticate"] = response.Headers.WwwAuthenticate.ToString();
        }
        return new BatchedResponse((int)response.StatusCode, headers, await response.Content.ReadAsByteArrayAsync());
    }

    private static JsonElement BodyOf(BatchedResponse answer) =>
        answer.Body.Length == 0 ? default : JsonDocument.Parse(answer.Body).RootElement.Clone();

    [Test]
    public async Task Answers_each_consume_as_it_answers_it_sent_alone()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user));
        var service = Tokens.Service();
        var items = new[]
        {
            Item(service, Consume(user, UsageHost.NewKey())),
            Item(service, "{\"userId\":"),
            Item(null, Consume(user, UsageHost.NewKey())),
            Item(Tokens.User(user), Consume(user, UsageHost.NewKey())),
            Item(Tokens.Create("svc", scope: "billing.usage", key: new string('k', 40)), Consume(user, UsageHost.NewKey())),
            Item(Tokens.Create("svc", scope: "billing.usage", lifetime: TimeSpan.FromMinutes(-10)), Consume(user, UsageHost.NewKey())),
            Item(service, Consume(user, UsageHost.NewKey(), meter: "no.such.meter")),
            Item(service, Consume(UsageHost.NewUser(), UsageHost.NewKey())),
            Item(service, Consume(user, UsageHost.NewKey()), contentType: "text/plain"),
            Item(service, Consume(user, UsageHost.NewKey())),
        };

        var batched = await SendAsync(items);

        Assert.That(batched, Has.Count.EqualTo(items.Length));
        Assert.That(batched.Select(a => a.Status), Is.EqualTo(new[] { 200, 400, 401, 403, 401, 401, 400, 402, 415, 200 }));
        for (var i = 0; i < items.Length; i++)
        {
            // Sent alone again: a spent key replays its first answer, everything else is refused the same way.
            var alone = await AloneAsync(items[i]);
            Assert.That(batched[i].Status, Is.EqualTo(alone.Status), $"item {i}");
            Assert.That(batched[i].Headers.GetValueOrDefault("Content-Type"), Is.EqualTo(alone.Headers.GetValueOrDefault("Content-Type")), $"item {i}");
            Assert.That(batched[i].Headers.GetValueOrDefault("WWW-Authenticate"), Is.EqualTo(alone.Headers.GetValueOrDefault("WWW-Authenticate")), $"item {i}");
            var (mine, theirs) = (BodyOf(batched[i]), BodyOf(alone));
            if (batched[i].Status == 200)
            {
                Assert.That(mine.GetProperty("consumptionId").GetString(), Is.EqualTo(theirs.GetProperty("consumptionId").GetString()), $"item {i}");
                Assert.That(mine.GetProperty("remaining").GetInt64(), Is.EqualTo(theirs.GetProperty("remaining").GetInt64()), $"item {i}");
            }
            else
            {
                Assert.That(mine.GetProperty("code").GetString(), Is.EqualTo(theirs.GetProperty("code").GetString()), $"item {i}: {mine}");
            }
        }
        Assert.That(batched[4].Headers.GetValueOrDefault("WWW-Authenticate"), Does.Contain("invalid_token"), "a refused token's challenge comes back");
        Assert.That(batched[5].Headers.GetValueOrDefault("WWW-Authenticate"), Does.Contain("expired"));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(2));
    }

    [Test]
    public async Task Keeps_each_consumes_correlation_id_and_trace()
    {
        var traceId = Guid.NewGuid().ToString("N");
        var answers = await SendAsync(
        [
            Item(Tokens.Service(), Consume(UsageHost.NewUser(), UsageHost.NewKey(), meter: "no.such.meter"), "corr-batch-1", $"00-{traceId}-0123456789abcdef-01"),
            Item(Tokens.Service(), Consume(UsageHost.NewUser(), UsageHost.NewKey(), meter: "no.such.meter"), "corr-batch-2"),
        ]);

        Assert.That(BodyOf(answers[0]).GetProperty("correlationId").GetString(), Is.EqualTo("corr-batch-1"));
        Assert.That(BodyOf(answers[0]).GetProperty("traceId").GetString(), Does.Contain(traceId), "the gateway's trace");
        Assert.That(BodyOf(answers[1]).GetProperty("correlationId").GetString(), Is.EqualTo("corr-batch-2"));
        Assert.That(BodyOf(answers[1]).GetProperty("traceId").GetString(), Does.Not.Contain(traceId));
    }

    [Test]
    public async Task Spends_each_key_of_a_batch_once_and_answers_its_repeats_with_the_first_answer()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user));
        var service = Tokens.Service();
        var keys = Enumerable.Range(0, 30).Select(_ => UsageHost.NewKey()).ToList();
        var items = keys.Concat(Enumerable.Repeat(keys[0], 10)).Select(k => Item(service, Consume(user, k))).ToList();

        var answers = await SendAsync(items);

        Assert.That(answers.Select(a => a.Status), Is.All.EqualTo(200));
        var ids = answers.Select(a => BodyOf(a).GetProperty("consumptionId").GetString()).ToList();
        Assert.That(ids.Take(30).Distinct().Count(), Is.EqualTo(30));
        Assert.That(ids.Skip(30), Is.All.EqualTo(ids[0]));
        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(30));
    }

    [TestCase("not json")]
    [TestCase("[]")]
    [TestCase("{}")]
    [TestCase("[{\"headers\":{}}]")]
    [TestCase("too many")]
    public async Task Refuses_a_malformed_batch_with_400(string raw)
    {
        if (raw == "too many")
        {
            raw = JsonSerializer.Serialize(Enumerable.Repeat(Item(null, "{}"), ConsumeBatch.MaxItems + 1), ConsumeBatch.Json);
        }
        using var client = Host.CreateClient();
        var response = await client.PostAsync(ConsumeBatch.Path, UsageHost.Json(raw));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await UsageHost.BodyAsync(response)).GetProperty("code").GetString(), Is.EqualTo("validation"));
    }
}

/// <summary>
/// A batch's answers stream back one by one: a consume paid with purchased tokens waits for Wallet, and the others of
/// its batch must not wait with it (the gateway would hold up every caller of that batch).
/// </summary>
[TestFixture]
public class A_batch_with_a_consume_waiting_for_Wallet
{
    private static UsageHost Host => Hosts.Overage;

    [Test]
    public async Task Answers_the_other_consumes_of_the_batch_before_Wallet_has_answered()
    {
        var payer = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(payer, "pro"));
        var delay = TimeSpan.FromSeconds(3);
        // Pro has 5 api.credit a month: 6 are paid with tokens, and this Wallet takes 3 s to debit them.
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/debit").UsingPost().WithBody(b => b != null && b.Contains(payer)))
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json")
                .WithBodyAsJson(new { debited = true, balance = 940, transactionId = "tx-slow-batch" }).WithDelay(delay));
        var others = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            var user = UsageHost.NewUser();
            await Host.ApplyAsync(UsageHost.Activated(user, "pro"));
            others.Add(user);
        }
        var service = Tokens.Service();
        BatchedRequest Item(string user, long quantity) => new(
            new Dictionary<string, string> { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " + service },
            JsonSerializer.SerializeToUtf8Bytes(new { userId = user, meter = "api.credit", quantity, idempotencyKey = UsageHost.NewKey() }));
        var items = new[] { Item(payer, 6) }.Concat(others.Select(u => Item(u, 1))).ToList();

        using var client = Host.CreateClient();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, ConsumeBatch.Path) { Content = JsonContent.Create(items, options: ConsumeBatch.Json) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var arrived = new List<(BatchedAnswer Answer, TimeSpan At)>();
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Length > 0)
            {
                arrived.Add((JsonSerializer.Deserialize<BatchedAnswer>(line, ConsumeBatch.Json)!, clock.Elapsed));
            }
        }

        Assert.That(arrived.Select(a => a.Answer.Index).Take(5), Is.EquivalentTo(new[] { 1, 2, 3, 4, 5 }), "the others first, in any order");
        Assert.That(arrived.Select(a => a.Answer.Index).Skip(5), Is.EqualTo(new[] { 0 }), "the token-paid consume last");
        Assert.That(arrived.Select(a => a.Answer.Response.Status), Is.All.EqualTo(200));
        var quick = arrived.Take(5).Max(a => a.At);
        var slow = arrived[^1].At;
        Assert.That(slow, Is.GreaterThanOrEqualTo(delay), "the debit took the stub's delay");
        Assert.That(quick, Is.LessThan(slow - TimeSpan.FromSeconds(1.5)), $"the others came {quick} after the batch was sent, the paid one {slow}");
        Assert.That(JsonDocument.Parse(arrived[^1].Answer.Response.Body).RootElement.GetProperty("source").GetString(), Is.EqualTo("tokens"));
    }
}
