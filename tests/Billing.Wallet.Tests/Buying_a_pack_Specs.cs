using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Stripe;

namespace Billing.Wallet.Tests;

public sealed class Buying_a_pack
{
    private static WalletHost Host => Hosts.Packs;

    [Test]
    public async Task The_catalog_lists_the_packs_to_anyone()
    {
        using var anonymous = Host.CreateClient();
        var body = await WalletHost.BodyAsync(await anonymous.GetAsync("/api/token-packs"));
        var packs = body.GetProperty("packs").EnumerateArray().ToList();
        Assert.That(packs.Select(p => p.GetProperty("id").GetString()), Is.EqualTo(new[] { "starter", "booster", "power", "sprint" }));
        Assert.That(packs[0].GetProperty("tokens").GetInt64(), Is.EqualTo(100_000));
        Assert.That(packs[0].GetProperty("amount").GetInt64(), Is.EqualTo(500));
        Assert.That(packs[0].GetProperty("currency").GetString(), Is.EqualTo("usd"));
        Assert.That(packs[0].TryGetProperty("expiresAfterDays", out _), Is.False);
        Assert.That(packs[3].GetProperty("expiresAfterDays").GetInt32(), Is.EqualTo(30));
    }

    [Test]
    public async Task A_purchase_delivered_twice_grows_the_balance_once()
    {
        var user = WalletHost.NewUser();
        var purchase = WalletHost.Purchased(user);
        var messageId = Guid.NewGuid();

        await Host.PublishAsync(purchase, messageId);
        await Host.PublishAsync(purchase, messageId);          // a redelivery
        await Host.PublishAsync(purchase, Guid.NewGuid());     // the same purchase published again under another id
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) > 0);
        await Task.Delay(500);

        Assert.That(await Host.BalanceAsync(user), Is.EqualTo(100_000));
        var items = await Host.TransactionsAsync(user);
        Assert.That(items, Has.Count.EqualTo(1));
        Assert.That(items[0].GetProperty("kind").GetString(), Is.EqualTo("purchase"));
        Assert.That(items[0].GetProperty("reference").GetString(), Is.EqualTo(purchase.CheckoutSessionId));
        Assert.That(items[0].GetProperty("balanceAfter").GetInt64(), Is.EqualTo(100_000));
        Assert.That(await Host.ScalarAsync(
            "SELECT count(*) FROM outbox WHERE message_type LIKE 'Billing.Contracts.TokensGranted,%' AND payload->>'userId' = @user",
            new { user }), Is.EqualTo(1), "one TokensGranted in the outbox");
    }

    [Test]
    public async Task Tokens_expire_as_the_checkout_sold_them_whatever_the_catalog_says_when_the_payment_lands()
    {
        // Starter never expires in the catalog, Sprint after 30 days; these checkouts sold them the other way round.
        var user = WalletHost.NewUser();
        await Host.PublishAsync(WalletHost.Purchased(user) with { ExpiresAfterDays = 30 });
        await Host.PublishAsync(WalletHost.Purchased(user, "sprint", tokens: 1000, amount: 100) with { ExpiresAfterDays = 0 });
        await WalletHost.EventuallyAsync(async () => await Host.BalanceAsync(user) == 101_000);

        using var client = Host.UserClient(user);
        var wallet = await WalletHost.BodyAsync(await client.GetAsync("/api/wallet/me"));
        Assert.That(wallet.GetProperty("expiring").EnumerateArray().Select(e => e.GetProperty("amount").GetInt64()), Is.EqualTo(new[] { 100_000L }));
    }

    private static async Task<StripeClient> BoosterPriceAsync()
    {
        var stripe = new StripeClient(new StripeClientOptions { ApiKey = "sk_test_x", ApiBase = Hosts.SimulatorUrl });
        await new PriceService(stripe).CreateAsync(new PriceCreateOptions
        {
            Currency = "usd", UnitAmount = 2000, LookupKey = "pack_booster", TransferLookupKey = true, ProductData = new PriceProductDataOptions { Name = "Booster" },
        });
        return stripe;
    }

    private static async Task<string> CheckoutAsync(HttpClient client)
    {
        var response = await client.PostAsJsonAsync("/api/wallet/checkout", new { packId = "booster" });
        var body = await WalletHost.BodyAsync(response);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        return body.GetProperty("checkoutSessionId").GetString()!;
    }

    [Test]
    public async Task A_double_click_gets_the_same_session_also_across_the_end_of_a_ten_minute_span()
    {
        await BoosterPriceAsync();
        using var client = Host.UserClient(WalletHost.NewUser());
        var now = Host.Clock.GetUtcNow();
        var toBoundary = TimeSpan.FromSeconds(600 - now.ToUnixTimeSeconds() % 600) - TimeSpan.FromMilliseconds(500);
        Host.Clock.Advance(toBoundary);
        try
        {
            var first = await CheckoutAsync(client);
            Host.Clock.Advance(TimeSpan.FromSeconds(1)); // past xx:x0:00
            Assert.That(await CheckoutAsync(client), Is.EqualTo(first));
        }
        finally
        {
            Host.Clock.Advance(-toBoundary - TimeSpan.FromSeconds(1));
        }
    }

    [Test]
    public async Task A_checkout_Stripe_refused_is_made_once_the_cause_is_mended_instead_of_Stripe_replaying_the_refusal()
    {
        var stripe = await BoosterPriceAsync();
        using var warm = Host.UserClient(WalletHost.NewUser());
        var sessions = new Stripe.Checkout.SessionService(stripe);
        var priceId = (await new Stripe.Checkout.SessionLineItemService(stripe).ListAsync(await CheckoutAsync(warm))).Data.Single().Price.Id; // the one the service uses
        var prices = new PriceService(stripe);
        using var client = Host.UserClient(WalletHost.NewUser());
        await prices.UpdateAsync(priceId, new PriceUpdateOptions { Active = false });
        try
        {
            var refused = await client.PostAsJsonAsync("/api/wallet/checkout", new { packId = "booster" });
            var body = await WalletHost.BodyAsync(refused);
            Assert.That((refused.StatusCode, body.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.BadGateway, "stripe_error")), body.ToString());
        }
        finally
        {
            await prices.UpdateAsync(priceId, new PriceUpdateOptions { Active = true });
        }

        Assert.That((await sessions.GetAsync(await CheckoutAsync(client))).Status, Is.EqualTo("open"));
    }

    [Test]
    public async Task A_burst_of_one_users_stuck_checkouts_does_not_keep_another_user_from_buying()
    {
        // One user's checkout waits on a slow Stripe (here: the test holds that checkout's lock) while twenty more of theirs
        // arrive; another user's checkout must not wait for connections they hold.
        await BoosterPriceAsync();
        var user = WalletHost.NewUser();
        static int StripeOf(string u) => (int)((uint)StringComparer.Ordinal.GetHashCode(u) % 64);
        var other = WalletHost.NewUser();
        while (StripeOf(other) != StripeOf(user)) // one that a queue striped 64 ways would have made wait behind the first
        {
            other = WalletHost.NewUser();
        }
        var pack = new { packId = "booster", successUrl = "http://app.test/bought", cancelUrl = "http://app.test/shop" };
        var urlsHash = Billing.ServiceDefaults.Stripe.IdempotencyKeys.Hash(pack.successUrl + "|" + pack.cancelUrl);
        await using var blocker = new Npgsql.NpgsqlConnection(Host.ConnectionString);
        await blocker.OpenAsync();
        await using var tx = await blocker.BeginTransactionAsync();
        await using (var hold = new Npgsql.NpgsqlCommand(
            "SELECT pg_advisory_xact_lock(hashtextextended('pack-checkout|' || @user || '|booster|' || @urlsHash, 0))", blocker, tx))
        {
            hold.Parameters.AddWithValue("user", user);
            hold.Parameters.AddWithValue("urlsHash", urlsHash);
            await hold.ExecuteNonQueryAsync();
        }
        using var client = Host.UserClient(user);
        var burst = Enumerable.Range(0, 20).Select(_ => client.PostAsJsonAsync("/api/wallet/checkout", pack)).ToList();
        await Task.Delay(500);

        using var otherClient = Host.UserClient(other);
        var started = System.Diagnostics.Stopwatch.StartNew();
        var response = await otherClient.PostAsJsonAsync("/api/wallet/checkout", pack);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), (await WalletHost.BodyAsync(response)).ToString());
        Assert.That(started.Elapsed, Is.LessThan(TimeSpan.FromSeconds(4)), "not queued behind the other user's checkouts");

        await tx.RollbackAsync();
        var answers = await Task.WhenAll(burst);
        Assert.That(answers.Select(a => a.StatusCode), Is.All.AnyOf(HttpStatusCode.OK, HttpStatusCode.Conflict));
    }

    [Test]
    public async Task A_second_pack_bought_right_after_the_first_gets_a_new_session_not_the_paid_one()
    {
        var stripe = await BoosterPriceAsync();
        using var client = Host.UserClient(WalletHost.NewUser());
        var first = await CheckoutAsync(client);
        using var browser = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(Hosts.SimulatorUrl) };
        var paid = await browser.PostAsync($"/checkout/{first}/pay", new FormUrlEncodedContent(new Dictionary<string, string> { ["card"] = "4242424242424242" }));
        Assert.That((int)paid.StatusCode, Is.EqualTo(303));

        var second = await CheckoutAsync(client);
        Assert.That(second, Is.Not.EqualTo(first));
        Assert.That((await new Stripe.Checkout.SessionService(stripe).GetAsync(second)).Status, Is.EqualTo("open"));
        Assert.That(await CheckoutAsync(client), Is.EqualTo(second), "and a double click on that one gets it back");
    }

    [Test]
    public async Task An_open_session_older_than_ten_minutes_is_expired_before_a_new_one_so_the_two_cannot_both_be_paid()
    {
        var stripe = await BoosterPriceAsync();
        using var client = Host.UserClient(WalletHost.NewUser());
        var first = await CheckoutAsync(client);
        Host.Clock.Advance(TimeSpan.FromMinutes(11));
        try
        {
            var second = await CheckoutAsync(client);
            Assert.That(second, Is.Not.EqualTo(first));
            var sessions = new Stripe.Checkout.SessionService(stripe);
            Assert.That(((await sessions.GetAsync(first)).Status, (await sessions.GetAsync(second)).Status), Is.EqualTo(("expired", "open")));
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromMinutes(-11));
        }
    }

    [Test]
    public async Task Checkout_creates_a_payment_mode_session_that_carries_what_Payments_needs()
    {
        var stripe = new StripeClient(new StripeClientOptions { ApiKey = "sk_test_x", ApiBase = Hosts.SimulatorUrl });
        await new PriceService(stripe).CreateAsync(new PriceCreateOptions
        {
            Currency = "usd",
            UnitAmount = 2000,
            LookupKey = "pack_booster",
            TransferLookupKey = true,
            ProductData = new PriceProductDataOptions { Name = "Booster" },
        });
        var user = WalletHost.NewUser();
        using var client = Host.UserClient(user, email: $"{user}@example.test");

        var response = await client.PostAsJsonAsync("/api/wallet/checkout", new { packId = "booster" });
        var body = await WalletHost.BodyAsync(response);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var sessionId = body.GetProperty("checkoutSessionId").GetString()!;
        Assert.That(body.GetProperty("url").GetString(), Does.StartWith(Hosts.SimulatorUrl));

        var session = await new Stripe.Checkout.SessionService(stripe).GetAsync(sessionId);
        Assert.That(session.Mode, Is.EqualTo("payment"));
        Assert.That(session.ClientReferenceId, Is.EqualTo(user));
        Assert.That(session.Metadata, Does.ContainKey("userId").WithValue(user));
        Assert.That(session.Metadata, Does.ContainKey("kind").WithValue("token_pack"));
        Assert.That(session.Metadata, Does.ContainKey("packId").WithValue("booster"));
        Assert.That(session.Metadata, Does.ContainKey("tokens").WithValue("500000"), "what this checkout sells, whatever the catalog says later");
        Assert.That(session.Metadata, Does.ContainKey("expiresAfterDays").WithValue("0"), "never expires, as sold");
        Assert.That(session.SuccessUrl, Is.EqualTo("http://app.test/billing/checkout/success?session_id={CHECKOUT_SESSION_ID}"));
        Assert.That(session.CustomerEmail, Is.EqualTo($"{user}@example.test"));

        // A double click gets the same session back.
        var again = await WalletHost.BodyAsync(await client.PostAsJsonAsync("/api/wallet/checkout", new { packId = "booster" }));
        Assert.That(again.GetProperty("checkoutSessionId").GetString(), Is.EqualTo(sessionId));

        // Paying it (the simulator's hosted page) makes a payment intent that carries the same metadata.
        using var browser = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(Hosts.SimulatorUrl) };
        var paid = await browser.PostAsync($"/checkout/{sessionId}/pay", new FormUrlEncodedContent(new Dictionary<string, string> { ["card"] = "4242424242424242" }));
        Assert.That((int)paid.StatusCode, Is.EqualTo(303));
        session = await new Stripe.Checkout.SessionService(stripe).GetAsync(sessionId);
        Assert.That(session.PaymentStatus, Is.EqualTo("paid"));
        var intent = await new PaymentIntentService(stripe).GetAsync(session.PaymentIntentId);
        Assert.That(intent.Metadata, Does.ContainKey("kind").WithValue("token_pack"));
        Assert.That(intent.Metadata, Does.ContainKey("userId").WithValue(user));
    }

    [Test]
    public async Task Checkout_of_a_pack_that_is_not_in_Stripe_answers_503()
    {
        using var client = Host.UserClient(WalletHost.NewUser());
        var response = await client.PostAsJsonAsync("/api/wallet/checkout", new { packId = "power" });
        var body = await WalletHost.BodyAsync(response);
        Assert.That((int)response.StatusCode, Is.EqualTo(503));
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("price_not_in_stripe"));
    }

    [TestCase("{\"packId\":\"nope\"}")]
    [TestCase("{\"packId\":\"starter\",\"successUrl\":\"javascript:alert(1)\"}")]
    [TestCase("{\"packId\":\"starter\",\"cancelUrl\":\"/relative\"}")]
    [TestCase("{\"packId\":\"starter\",\"cancelUrl\":\"https://evil.example/login\"}")] // not one of Billing's frontends: an open redirect
    [TestCase("{}")]
    [TestCase("null")]
    public async Task Checkout_of_an_unknown_pack_or_a_bad_url_answers_400(string json)
    {
        using var client = Host.UserClient(WalletHost.NewUser());
        var response = await client.PostAsync("/api/wallet/checkout", WalletHost.Json(json));
        var body = await WalletHost.BodyAsync(response);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("validation"));
    }
}
