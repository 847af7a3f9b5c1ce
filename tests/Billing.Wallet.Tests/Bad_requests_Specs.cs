using System.Net;
using System.Net.Http.Headers;

namespace Billing.Wallet.Tests;

public sealed class Refusing_bad_requests
{
    private static WalletHost Host => Hosts.Packs;

    [Test]
    public async Task A_user_token_cannot_debit_through_the_internal_endpoint()
    {
        var user = WalletHost.NewUser();
        await Host.GrantAsync(user, 100);
        using var client = Host.UserClient(user);
        var response = await client.PostAsync("/internal/wallet/debit", WalletHost.Json($"{{\"userId\":\"{user}\",\"amount\":1,\"idempotencyKey\":\"k1\"}}"));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await client.GetAsync($"/internal/wallet/{user}")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(100));
    }

    [Test]
    public async Task Without_a_token_the_wallet_answers_401_and_admin_endpoints_need_the_admin_scope()
    {
        using var anonymous = Host.CreateClient();
        Assert.That((await anonymous.GetAsync("/api/wallet/me")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        using var user = Host.UserClient(WalletHost.NewUser());
        Assert.That((await user.GetAsync("/api/admin/wallet/verify")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await Host.Service.PostAsync("/api/admin/wallet/u1/grants", WalletHost.Json("{\"amount\":1,\"idempotencyKey\":\"x\",\"reason\":\"r\"}"))).StatusCode,
            Is.EqualTo(HttpStatusCode.Forbidden));
    }

    [TestCase("{")]
    [TestCase("not json")]
    [TestCase("null")]
    [TestCase("{}")]
    [TestCase("[]")]
    [TestCase("{\"userId\":\"u1\",\"amount\":\"seven\",\"idempotencyKey\":\"k\"}")]
    [TestCase("{\"userId\":\"u1\",\"amount\":7.5,\"idempotencyKey\":\"k\"}")]
    [TestCase("{\"userId\":\"u1\",\"amount\":0,\"idempotencyKey\":\"k\"}")]
    [TestCase("{\"userId\":\"u1\",\"amount\":-7,\"idempotencyKey\":\"k\"}")]
    [TestCase("{\"userId\":\"u1\",\"amount\":1000000000001,\"idempotencyKey\":\"k\"}")]
    [TestCase("{\"userId\":\"u1\",\"amount\":99999999999999999999999,\"idempotencyKey\":\"k\"}")]
    [TestCase("{\"userId\":\"u1\",\"amount\":7}")]
    [TestCase("{\"amount\":7,\"idempotencyKey\":\"k\"}")]
    [TestCase("{\"userId\":\"\",\"amount\":7,\"idempotencyKey\":\"k\"}")]
    [TestCase("{\"userId\":\"u1\",\"amount\":7,\"idempotencyKey\":\"LONG\"}")]
    [TestCase("{\"userId\":\"u1\",\"amount\":7,\"idempotencyKey\":\"k\",\"reference\":\"LONGLONG\"}")]
    public async Task A_malformed_debit_answers_400_as_a_problem(string json)
    {
        json = json.Replace("LONGLONG", new string('r', 501)).Replace("LONG", new string('k', 201));
        var response = await Host.Service.PostAsync("/internal/wallet/debit", WalletHost.Json(json));
        var text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), text);
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"), text);
    }

    [TestCase("{\"amount\":0,\"idempotencyKey\":\"k\",\"reason\":\"r\"}")]
    [TestCase("{\"amount\":10,\"reason\":\"r\"}")]
    [TestCase("{\"amount\":10,\"idempotencyKey\":\"k\"}")]
    [TestCase("{\"amount\":10,\"idempotencyKey\":\"k\",\"reason\":\"r\",\"expiresAt\":\"2001-01-01T00:00:00Z\"}")]
    [TestCase("{\"amount\":10,\"idempotencyKey\":\"k\",\"reason\":\"r\",\"expiresAt\":\"tomorrow\"}")]
    [TestCase("{\"amount\":10,")]
    public async Task A_malformed_grant_answers_400_as_a_problem(string json)
    {
        var response = await Host.Admin.PostAsync($"/api/admin/wallet/{WalletHost.NewUser()}/grants", WalletHost.Json(json));
        var text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), text);
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"), text);
    }

    [Test]
    public async Task A_body_that_is_not_JSON_at_all_answers_4xx_not_500()
    {
        var content = new StringContent("userId=u1&amount=7");
        content.Headers.ContentType = new MediaTypeHeaderValue("application/x-www-form-urlencoded");
        var response = await Host.Service.PostAsync("/internal/wallet/debit", content);
        Assert.That((int)response.StatusCode, Is.InRange(400, 499));
    }
}
