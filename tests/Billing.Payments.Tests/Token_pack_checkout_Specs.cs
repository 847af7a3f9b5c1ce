using System.Net;
using System.Text.Json.Nodes;

namespace Billing.Payments.Tests;

/// <summary>
/// A token pack grants what its checkout sold (Wallet writes the tokens into the session's metadata), whatever the catalog
/// says when the payment completes: a checkout stays open for a day and a bank payment settles days later, during which the
/// pack may change or go. The real Payments API on PostgreSQL and RabbitMQ with the learning community's packs; Stripe is WireMock.
/// </summary>
[TestFixture]
[NonParallelizable]
public class A_token_pack_checkout
{
    private FakeStripe _stripe = null!;
    private PaymentsHost _payments = null!;

    [OneTimeSetUp]
    public void Start()
    {
        _stripe = new FakeStripe();
        _payments = new PaymentsHost(_stripe.Url, "learning-community.json");
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await _payments.DisposeAsync();
        _stripe.Dispose();
    }

    private async Task<string> CompleteAsync(string packId, string? tokens, string? expiresAfterDays = null)
    {
        var n = Guid.NewGuid().ToString("N")[..14];
        var metadata = new JsonObject { ["userId"] = "u-" + n, ["kind"] = "token_pack", ["packId"] = packId };
        if (tokens is not null)
        {
            metadata["tokens"] = tokens;
        }
        if (expiresAfterDays is not null)
        {
            metadata["expiresAfterDays"] = expiresAfterDays;
        }
        var session = new JsonObject
        {
            ["id"] = "cs_" + n, ["object"] = "checkout.session", ["mode"] = "payment", ["status"] = "complete", ["payment_status"] = "paid",
            ["amount_total"] = 500, ["currency"] = "usd", ["client_reference_id"] = "u-" + n, ["customer"] = null, ["payment_intent"] = null,
            ["subscription"] = null, ["livemode"] = false, ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), ["metadata"] = metadata,
        };
        _stripe.Object("/v1/checkout/sessions/cs_" + n, session);
        var body = FakeStripe.Event("evt_" + n, "checkout.session.completed", session);
        var (status, answer, _) = await _payments.SendWebhookAsync(body);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), answer);
        return "cs_" + n;
    }

    private static Task<long> GrantedAsync(string sessionId) => PaymentsHost.EventuallyAsync(
        () => PaymentsHost.ScalarAsync("SELECT coalesce(max((payload->>'tokens')::bigint), 0) FROM outbox WHERE payload->>'checkoutSessionId' = @s", new { s = sessionId }),
        tokens => tokens > 0, "TokenPackPurchased in the outbox");

    [Test]
    public async Task Grants_the_tokens_the_checkout_sold_not_what_the_catalog_says_now()
    {
        // The catalog's Starter pack has 100,000 tokens now; this checkout sold it when it had 80,000.
        Assert.That(await GrantedAsync(await CompleteAsync("starter", "80000")), Is.EqualTo(80_000));
    }

    [Test]
    public async Task Grants_a_pack_that_is_gone_from_the_catalog()
    {
        Assert.That(await GrantedAsync(await CompleteAsync("retired-pack", "25000")), Is.EqualTo(25_000));
    }

    [TestCase("45", "45")]
    [TestCase("0", "0")]
    [TestCase(null, null)]
    public async Task Passes_on_how_long_the_checkout_sold_the_tokens_for(string? sold, string? published)
    {
        var sessionId = await CompleteAsync("starter", "100000", sold);
        await GrantedAsync(sessionId);
        var days = await PaymentsHost.ScalarAsync(
            "SELECT coalesce(max((payload->>'expiresAfterDays')::bigint), -1) FROM outbox WHERE payload->>'checkoutSessionId' = @s", new { s = sessionId });
        Assert.That(days, Is.EqualTo(published is null ? -1 : long.Parse(published, System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Test]
    public async Task A_checkout_from_before_the_tokens_were_written_is_granted_from_the_catalog()
    {
        Assert.That(await GrantedAsync(await CompleteAsync("booster", null)), Is.EqualTo(500_000));
    }
}
