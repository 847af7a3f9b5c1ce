using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;

namespace Billing.Usage.Tests;

[TestFixture]
public class Sending_a_bad_consume
{
    private static UsageHost Host => Hosts.Default;

    [TestCase("", "body")]
    [TestCase("not json", "body")]
    [TestCase("[1,2]", "body")]
    [TestCase("{\"userId\":", "body")]
    [TestCase("{}", "userId")]
    [TestCase("{\"userId\":5,\"meter\":\"ai.generation\",\"quantity\":1,\"idempotencyKey\":\"k\"}", "userId")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":\"1\",\"idempotencyKey\":\"k\"}", "quantity")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":1.5,\"idempotencyKey\":\"k\"}", "quantity")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":0,\"idempotencyKey\":\"k\"}", "quantity")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":1000000001,\"idempotencyKey\":\"k\"}", "quantity")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":99999999999999999999999,\"idempotencyKey\":\"k\"}", "quantity")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":1}", "idempotencyKey")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":1,\"idempotencyKey\":\"reservation:0193c0de-0000-7000-8000-000000000000\"}", "idempotencyKey")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":1,\"idempotencyKey\":\"k\",\"groups\":\"g\"}", "groups")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"\",\"quantity\":1,\"idempotencyKey\":\"k\"}", "meter")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":1,\"idempotencyKey\":\"k\\u0000x\"}", "idempotencyKey")]
    [TestCase("{\"userId\":\"u\\n\",\"meter\":\"ai.generation\",\"quantity\":1,\"idempotencyKey\":\"k\"}", "userId")]
    [TestCase("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":1,\"idempotencyKey\":\"k\",\"groups\":[\"g\\u0000\"]}", "groups")]
    public async Task Should_answer_400_validation_naming_the_field(string raw, string field)
    {
        var response = await Host.Service.PostAsync("/api/usage/consume", UsageHost.Json(raw));
        var problem = await UsageHost.BodyAsync(response);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("validation"));
        Assert.That(problem.GetProperty("errors").TryGetProperty(field, out _), Is.True, problem.ToString());
    }

    [Test]
    public async Task A_NUL_in_one_request_does_not_disturb_the_spends_around_it()
    {
        // Before the check, a NUL reached PostgreSQL inside a group-committed batch and failed its neighbours.
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user));
        var bad = Enumerable.Range(0, 10).Select(i => Host.Service.PostAsync("/api/usage/consume",
            UsageHost.Json($"{{\"userId\":\"{user}\",\"meter\":\"ai.generation\",\"quantity\":1,\"idempotencyKey\":\"bad{i}\\u0000\"}}")));
        var good = Enumerable.Range(0, 20).Select(_ => Host.ConsumeAsync(user, UsageHost.NewKey()));
        var badAnswers = await Task.WhenAll(bad);
        var goodAnswers = await Task.WhenAll(good);
        Assert.That(badAnswers.Select(r => r.StatusCode), Is.All.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(goodAnswers.Select(r => r.Status), Is.All.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task Refused_and_answered_consumes_leave_no_expected_spend_behind_for_the_writer_to_wait_for()
    {
        // Every consume tells the group-commit writer it is coming; a 400, an unknown meter or a spend must all say when
        // they are done, or every later batch would wait its full gathering time.
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user));
        var requests = Enumerable.Range(0, 30).Select(i => (i % 3) switch
        {
            0 => Host.Service.PostAsync("/api/usage/consume", UsageHost.Json("{\"userId\":")),
            1 => Host.Service.PostAsJsonAsync("/api/usage/consume", new { userId = user, meter = "no.such.meter", quantity = 1, idempotencyKey = UsageHost.NewKey() }),
            _ => Host.Service.PostAsJsonAsync("/api/usage/consume", new { userId = user, meter = "ai.generation", quantity = 1, idempotencyKey = UsageHost.NewKey() }),
        });
        var answers = await Task.WhenAll(requests);
        Assert.That(answers.Select(a => (int)a.StatusCode).Distinct().Order(), Is.EqualTo(new[] { 200, 400 }));
        Assert.That(Host.Services.GetRequiredService<Billing.Usage.Api.Spending.SpendWriter>().Expected, Is.Zero);
    }

    [Test]
    public async Task Should_refuse_a_user_id_over_200_characters()
    {
        var (status, problem) = await Host.ConsumeAsync(new string('u', 201), UsageHost.NewKey());
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(problem.GetProperty("errors").TryGetProperty("userId", out _), Is.True);
    }

    [Test]
    public async Task Should_answer_unknown_meter_for_a_meter_no_plan_has()
    {
        var (status, problem) = await Host.ConsumeAsync(UsageHost.NewUser(), UsageHost.NewKey(), meter: "video.render");
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("unknown_meter"));
    }

    [Test]
    public async Task A_user_token_cannot_consume()
    {
        using var client = Host.UserClient(UsageHost.NewUser());
        var response = await client.PostAsync("/api/usage/consume",
            UsageHost.Json("{\"userId\":\"u\",\"meter\":\"ai.generation\",\"quantity\":1,\"idempotencyKey\":\"k\"}"));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
    }

    [Test]
    public async Task No_token_is_401()
    {
        using var client = Host.CreateClient();
        var response = await client.GetAsync("/api/usage/me");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [TestCase("from=yesterday")]
    [TestCase("to=9999-12-31")]
    [TestCase("to=0001-01-01")]
    [TestCase("from=0001-01-01T00:00:00Z&to=0001-01-02")]
    public async Task A_bad_history_range_is_400(string query)
    {
        using var client = Host.UserClient(UsageHost.NewUser());
        var response = await client.GetAsync("/api/usage/me/history?" + query);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await UsageHost.BodyAsync(response)).GetProperty("code").GetString(), Is.EqualTo("validation"));
    }
}
