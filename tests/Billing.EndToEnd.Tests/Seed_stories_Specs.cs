namespace Billing.EndToEnd.Tests;

/// <summary>
/// Each seed product's own story, against its own catalog (deploy/billing test restarts the services with
/// <c>deploy/catalogs/&lt;seed&gt;.json</c> and runs the tests of category <c>seed-&lt;seed&gt;</c>).
/// </summary>
public static class Seed
{
    public static string NewUser(string seed) => $"e2e-{seed}-{Guid.NewGuid().ToString("N")[..8]}";

    public static object Consume(string user, string meter, long quantity, string? key = null) =>
        new { userId = user, meter, quantity, idempotencyKey = key ?? Guid.NewGuid().ToString("N") };

    public static async Task<JsonElement> MeterAsync(Api api, string meter, Func<JsonElement, bool> done, TimeSpan? timeout = null) =>
        await Eventually.GetAsync(async () =>
        {
            var (status, body, _) = await api.GetAsync("/api/usage/me");
            return status == HttpStatusCode.OK
                ? body.GetProperty("meters").EnumerateArray().FirstOrDefault(m => m.GetProperty("meter").GetString() == meter)
                : default;
        }, m => m.ValueKind == JsonValueKind.Object && done(m), $"the {meter} meter", timeout);
}

[TestFixture]
[Category("seed")]
[Category("seed-chatbot")]
[NonParallelizable]
public class The_chatbots_daily_message_limit
{
    [Test]
    public async Task Allows_50_a_day_on_the_free_plan_and_resets_at_midnight_UTC()
    {
        var user = Seed.NewUser("chatbot");
        using var api = Api.Gateway(Tokens.User(user));
        using var service = Api.Gateway(Tokens.Service());
        var meter = await Seed.MeterAsync(api, "chat.message", _ => true);
        Assert.That((meter.GetProperty("limit").GetInt64(), meter.GetProperty("window").GetString()), Is.EqualTo((50L, "day")));
        var resetsAt = meter.GetProperty("resetsAt").GetDateTimeOffset();
        Assert.That(resetsAt.TimeOfDay, Is.EqualTo(TimeSpan.Zero), "midnight UTC");

        for (var i = 0; i < 50; i++)
        {
            Assert.That((await service.PostAsync("/api/usage/consume", Seed.Consume(user, "chat.message", 1))).Status, Is.EqualTo(HttpStatusCode.OK));
        }
        var (refused, problem, _) = await service.PostAsync("/api/usage/consume", Seed.Consume(user, "chat.message", 1));
        Assert.That(refused, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("quota_exhausted"));
        Assert.That(problem.GetProperty("resetsAt").GetDateTimeOffset(), Is.EqualTo(resetsAt));
        Assert.That(problem.GetProperty("upgrade").GetBoolean(), Is.True, "Pro allows 500 a day");

        await Simulator.AdvanceAsync(resetsAt - await Simulator.NowAsync() + TimeSpan.FromMinutes(1));
        await Eventually.GetAsync(async () => (await service.PostAsync("/api/usage/consume", Seed.Consume(user, "chat.message", 1))).Status,
            s => s == HttpStatusCode.OK, "a new day's allowance");
        var next = await Seed.MeterAsync(api, "chat.message", m => m.GetProperty("used").GetInt64() == 1);
        Assert.That(next.GetProperty("resetsAt").GetDateTimeOffset(), Is.EqualTo(resetsAt.AddDays(1)));
    }

    [Test]
    public async Task Bills_Pro_messages_past_the_daily_allowance_on_the_renewal_invoice()
    {
        var user = Seed.NewUser("chatbot");
        using var api = Api.Gateway(Tokens.User(user));
        using var service = Api.Gateway(Tokens.Service());
        var plans = (await api.GetAsync("/api/plans")).Body.GetProperty("plans").EnumerateArray().ToList();
        var proMeter = plans.Single(p => p.GetProperty("id").GetString() == "pro").GetProperty("meters")[0];
        Assert.That((proMeter.GetProperty("overage").GetString(), proMeter.GetProperty("overageUnitAmount").GetDecimal()), Is.EqualTo(("bill", 0.5m)),
            "the pricing page can say what a message past the allowance costs");
        await Paying_for_Pro.SubscribeAsync(api, "pro", "month");
        await Seed.MeterAsync(api, "chat.message", m => m.GetProperty("limit").GetInt64() == 500);
        var stripe = await StripeView.SubscriptionOfAsync(user);
        var items = stripe.GetProperty("items").GetProperty("data").EnumerateArray().ToList();
        Assert.That(items.Select(i => i.GetProperty("price").GetProperty("lookup_key").GetString()),
            Is.EquivalentTo(new[] { "pro_month", "pro_month_overage_chat_messages_overage" }), "the plan's price and the metered overage price");

        Assert.That((await service.PostAsync("/api/usage/consume", Seed.Consume(user, "chat.message", 500))).Status, Is.EqualTo(HttpStatusCode.OK));
        for (var i = 0; i < 3; i++)
        {
            var (status, body, _) = await service.PostAsync("/api/usage/consume", Seed.Consume(user, "chat.message", 1));
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), "past the allowance, a bill meter allows the spend: " + body);
        }
        var customer = await StripeView.CustomerOfAsync(user);
        await Eventually.GetAsync(() => StripeView.MeterEventValuesAsync(customer), v => v.Sum() == 3, "Usage to report 3 messages of overage to Stripe");

        var (previewed, upcoming, _) = await api.GetAsync("/api/subscriptions/me/upcoming-invoice");
        Assert.That((previewed, upcoming.GetProperty("amountDue").GetInt64()), Is.EqualTo((HttpStatusCode.OK, 1500L + 2)), "what the renewal will charge, as of now");
        var planItem = items.Single(i => i.GetProperty("price").GetProperty("recurring").GetProperty("usage_type").GetString() != "metered");
        var periodEnd = DateTimeOffset.FromUnixTimeSeconds(planItem.GetProperty("current_period_end").GetInt64());
        await Simulator.AdvanceAsync(periodEnd - await Simulator.NowAsync() + TimeSpan.FromHours(1));
        var payments = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            p => p.GetArrayLength() == 2, "the renewal's payment");
        // $15 for the new month and 3 messages at half a cent for the one that ended (1.5 cents, rounded to 2).
        Assert.That(payments[0].GetProperty("amount").GetInt64(), Is.EqualTo(1500 + 2));
        Assert.That(payments[0].GetProperty("description").GetString(), Is.EqualTo("Pro (monthly), with $0.02 overage"));
        Assert.That(payments[1].GetProperty("amount").GetInt64(), Is.EqualTo(1500));
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
    }

    [Test]
    public async Task Finds_billed_overage_that_Stripe_rejected_after_accepting_it()
    {
        var user = Seed.NewUser("chatbot");
        using var api = Api.Gateway(Tokens.User(user));
        using var service = Api.Gateway(Tokens.Service());
        using var admin = Api.Gateway(Tokens.Admin());
        await Paying_for_Pro.SubscribeAsync(api, "pro", "month");
        await Seed.MeterAsync(api, "chat.message", m => m.GetProperty("limit").GetInt64() == 500);
        Assert.That((await service.PostAsync("/api/usage/consume", Seed.Consume(user, "chat.message", 501))).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await service.PostAsync("/api/usage/consume", Seed.Consume(user, "chat.message", 2))).Status, Is.EqualTo(HttpStatusCode.OK));
        var customer = await StripeView.CustomerOfAsync(user);
        await Eventually.GetAsync(() => StripeView.MeterEventValuesAsync(customer), v => v.Sum() == 3, "Usage to report 3 messages of overage to Stripe");
        var now = await Simulator.NowAsync();
        var range = $"userId={user}&from={Uri.EscapeDataString(now.AddHours(-1).ToString("O"))}&to={Uri.EscapeDataString(now.AddMinutes(1).ToString("O"))}";

        var (status, check, _) = await admin.GetAsync("/api/admin/usage/overage-check?" + range);
        Assert.That((status, check.GetProperty("ok").GetBoolean(), check.GetProperty("checked").GetInt32(), check.GetProperty("matched").GetInt32()),
            Is.EqualTo((HttpStatusCode.OK, true, 1, 1)), "what Usage reported is what Stripe's meter counted: " + check);

        // Stripe validates a meter event after answering 200, and rejects this one (as it would for a customer it cannot find).
        var rejected = (await StripeView.MeterEventsAsync(customer)).First(e => e.GetProperty("value").GetString() == "2");
        await Simulator.RejectMeterEventAsync(rejected.GetProperty("identifier").GetString()!);

        (status, check, _) = await admin.GetAsync("/api/admin/usage/overage-check?" + range);
        Assert.That((status, check.GetProperty("ok").GetBoolean()), Is.EqualTo((HttpStatusCode.OK, false)), check.ToString());
        var difference = check.GetProperty("differences").EnumerateArray().Single();
        Assert.That((difference.GetProperty("customerId").GetString(), difference.GetProperty("eventName").GetString(),
                difference.GetProperty("billingUnits").GetInt64(), difference.GetProperty("stripeUnits").GetDecimal()),
            Is.EqualTo((customer, "chat_messages_overage", 3L, 1m)), "Usage reported 3 units; Stripe's meter counts the 1 it kept");
        Assert.That((await api.GetAsync("/api/admin/usage/overage-check?" + range)).Status, Is.EqualTo(HttpStatusCode.Forbidden), "admins only");
    }

    [Test]
    public async Task Shows_the_agent_limit_of_the_plan_in_the_entitlements()
    {
        using var api = Api.Gateway(Tokens.User(Seed.NewUser("chatbot")));
        var (status, entitlements, _) = await api.GetAsync("/api/entitlements/me");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(entitlements.GetProperty("planId").GetString(), Is.EqualTo("free"));
        Assert.That(entitlements.GetProperty("limits").GetProperty("agents").GetInt64(), Is.EqualTo(1));
    }
}

[TestFixture]
[Category("seed")]
[Category("seed-chat-saas-credits")]
[NonParallelizable]
public class Monthly_credits
{
    [Test]
    public async Task Are_spent_in_variable_amounts_and_never_below_zero()
    {
        var user = Seed.NewUser("credits");
        using var api = Api.Gateway(Tokens.User(user));
        using var service = Api.Gateway(Tokens.Service());
        var free = await Seed.MeterAsync(api, "ai.credit", _ => true);
        Assert.That(free.GetProperty("limit").GetInt64(), Is.EqualTo(100), "new users get 100 free credits a month");

        await Paying_for_Pro.SubscribeAsync(api, "pro", "month");
        await Seed.MeterAsync(api, "ai.credit", m => m.GetProperty("limit").GetInt64() == 1000);
        foreach (var amount in new[] { 300, 450, 200 })
        {
            Assert.That((await service.PostAsync("/api/usage/consume", Seed.Consume(user, "ai.credit", amount))).Status, Is.EqualTo(HttpStatusCode.OK));
        }
        var (tooMuch, problem, _) = await service.PostAsync("/api/usage/consume", Seed.Consume(user, "ai.credit", 60));
        Assert.That(tooMuch, Is.EqualTo(HttpStatusCode.PaymentRequired));
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("quota_exhausted"));
        var (exact, last, _) = await service.PostAsync("/api/usage/consume", Seed.Consume(user, "ai.credit", 50));
        Assert.That(exact, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(last.GetProperty("remaining").GetInt64(), Is.Zero);

        var payments = (await api.GetAsync("/api/payments/me")).Body.GetProperty("items");
        Assert.That(payments[0].GetProperty("amount").GetInt64(), Is.EqualTo(1900));
        Assert.That(payments[0].GetProperty("receiptUrl").GetString(), Is.Not.Empty);
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
    }
}

[TestFixture]
[Category("seed")]
[Category("seed-api-gateway-credits")]
[NonParallelizable]
public class Changing_the_api_gateways_plan
{
    [Test]
    public async Task An_upgrade_is_prorated_and_applies_now_and_a_downgrade_waits_for_the_period_end()
    {
        var user = Seed.NewUser("gateway");
        using var api = Api.Gateway(Tokens.User(user));
        using var service = Api.Gateway(Tokens.Service());
        await Paying_for_Pro.SubscribeAsync(api, "starter", "month");
        await Seed.MeterAsync(api, "api.credit", m => m.GetProperty("limit").GetInt64() == 2000);
        Assert.That((await service.PostAsync("/api/usage/consume", Seed.Consume(user, "api.credit", 100))).Status, Is.EqualTo(HttpStatusCode.OK));

        await Simulator.AdvanceAsync(TimeSpan.FromDays(10));
        var (previewed, preview, _) = await api.GetAsync("/api/subscriptions/me/change-preview?planId=pro&interval=month");
        Assert.That(previewed, Is.EqualTo(HttpStatusCode.OK), preview.ToString());
        Assert.That(preview.GetProperty("kind").GetString(), Is.EqualTo("upgrade"));
        var due = preview.GetProperty("amountDueNow").GetInt64();
        Assert.That(due, Is.InRange(1500, 2400), "about two thirds of the $30 difference");

        var (changed, change, _) = await api.PostAsync("/api/subscriptions/me/change", new { planId = "pro", interval = "month" });
        Assert.That(changed, Is.EqualTo(HttpStatusCode.OK), change.ToString());
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("planId").GetString() == "pro", "the upgrade to apply now");
        var upgraded = await Seed.MeterAsync(api, "api.credit", m => m.GetProperty("limit").GetInt64() == 5000);
        Assert.That(upgraded.GetProperty("used").GetInt64(), Is.EqualTo(100), "what was used stays used");
        var proration = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            items => items.GetArrayLength() >= 2, "the proration payment");
        Assert.That(proration[0].GetProperty("amount").GetInt64(), Is.EqualTo(due).Within(1), "charged what the preview said");

        var (downgraded, downgrade, _) = await api.PostAsync("/api/subscriptions/me/change", new { planId = "starter", interval = "month" });
        Assert.That(downgraded, Is.EqualTo(HttpStatusCode.OK), downgrade.ToString());
        Assert.That(downgrade.GetProperty("kind").GetString(), Is.EqualTo("downgrade"));
        var periodEnd = downgrade.GetProperty("effectiveAt").GetDateTimeOffset();
        await Task.Delay(1500);
        Assert.That((await api.GetAsync("/api/subscriptions/me")).Body.GetProperty("planId").GetString(), Is.EqualTo("pro"), "paid for until the period end");
        Assert.That((await Seed.MeterAsync(api, "api.credit", _ => true)).GetProperty("limit").GetInt64(), Is.EqualTo(5000));

        await Simulator.AdvanceAsync(periodEnd - await Simulator.NowAsync() + TimeSpan.FromHours(1));
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("planId").GetString() == "starter", "the downgrade at the period end", TimeSpan.FromSeconds(30));
        await Seed.MeterAsync(api, "api.credit", m => m.GetProperty("limit").GetInt64() == 2000 && m.GetProperty("used").GetInt64() == 0);
        var renewal = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            items => items.GetArrayLength() >= 3, "the renewal at the Starter price");
        Assert.That(renewal[0].GetProperty("amount").GetInt64(), Is.EqualTo(2000));
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
    }
}

[TestFixture]
[Category("seed")]
[Category("seed-learning-community")]
[NonParallelizable]
public class The_learning_communitys_quarterly_trial
{
    [Test]
    public async Task That_ends_without_a_successful_payment_ends_access_after_the_grace_period()
    {
        var user = Seed.NewUser("learn-unpaid");
        using var api = Api.Gateway(Tokens.User(user));
        using var service = Api.Gateway(Tokens.Service());
        var (_, checkout, _) = await api.PostAsync("/api/subscriptions/checkout", new { planId = "community_pro", interval = "month", intervalCount = 3 });
        // 4000 0000 0000 0341 is accepted for the trial and declined when the trial ends.
        Assert.That((await Simulator.PayAsync(checkout.GetProperty("checkoutSessionId").GetString()!, "4000000000000341")).Status, Is.EqualTo(HttpStatusCode.SeeOther));
        var trial = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "trialing", "the trial");
        Assert.That((await service.PostAsync("/api/usage/consume", Seed.Consume(user, "ai.upload", 1))).Status, Is.EqualTo(HttpStatusCode.OK), "the trial gives the plan's access");

        var trialEnd = trial.GetProperty("trialEnd").GetDateTimeOffset();
        await Simulator.AdvanceAsync(trialEnd - await Simulator.NowAsync() + TimeSpan.FromHours(1));
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "past_due", "the unpaid trial end");
        await StripeView.AssertBillingMatchesStripeAsync(api, user);

        await Simulator.AdvanceAsync(TimeSpan.FromDays(3) + TimeSpan.FromHours(2)); // the catalog's 3-day grace
        var refused = await Eventually.GetAsync(async () => await service.PostAsync("/api/usage/consume", Seed.Consume(user, "ai.upload", 1)),
            r => r.Status == HttpStatusCode.PaymentRequired, "access to end after the grace period");
        Assert.That(refused.Body.GetProperty("code").GetString(), Is.EqualTo("payment_past_due"));
    }

    [Test]
    public async Task Gives_access_during_the_7_day_trial_then_charges_the_quarter_and_a_token_pack_adds_tokens()
    {
        var user = Seed.NewUser("learn");
        using var api = Api.Gateway(Tokens.User(user, email: user + "@example.com"));
        var free = await Seed.MeterAsync(api, "ai.upload", _ => true);
        Assert.That(free.GetProperty("limit").GetInt64(), Is.EqualTo(3), "3 free AI uploads");

        await Paying_for_Pro.SubscribeAsync(api, "community_pro", "month", intervalCount: 3, expectedStatus: "trialing");
        var trial = (await api.GetAsync("/api/subscriptions/me")).Body;
        Assert.That(trial.GetProperty("intervalCount").GetInt32(), Is.EqualTo(3));
        var trialEnd = trial.GetProperty("trialEnd").GetDateTimeOffset();
        Assert.That(trialEnd - await Simulator.NowAsync(), Is.EqualTo(TimeSpan.FromDays(7)).Within(TimeSpan.FromMinutes(10)));
        await Seed.MeterAsync(api, "ai.upload", m => m.GetProperty("limit").GetInt64() == 100);
        Assert.That((await api.GetAsync("/api/payments/me")).Body.GetProperty("items").GetArrayLength(), Is.Zero, "nothing charged during the trial");

        await Simulator.AdvanceAsync(trialEnd - await Simulator.NowAsync() + TimeSpan.FromHours(1));
        var active = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("status").GetString() == "active", "the trial to convert");
        Assert.That(active.GetProperty("currentPeriodEnd").GetDateTimeOffset() - trialEnd, Is.GreaterThan(TimeSpan.FromDays(88)), "a quarter");
        var paid = await Eventually.GetAsync(async () => (await api.GetAsync("/api/payments/me")).Body.GetProperty("items"),
            items => items.GetArrayLength() == 1, "the first quarter's payment");
        Assert.That(paid[0].GetProperty("amount").GetInt64(), Is.EqualTo(5400));

        var (status, checkout, _) = await api.PostAsync("/api/wallet/checkout", new { packId = "starter" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), checkout.ToString());
        Assert.That((await Simulator.PayAsync(checkout.GetProperty("checkoutSessionId").GetString()!)).Status, Is.EqualTo(HttpStatusCode.SeeOther));
        var wallet = await Eventually.GetAsync(async () => (await api.GetAsync("/api/wallet/me")).Body,
            w => w.GetProperty("balance").GetInt64() == 100_000, "the Starter pack's 100K tokens");
        Assert.That(wallet.GetProperty("balance").GetInt64(), Is.EqualTo(100_000));
        var packs = (await api.GetAsync("/api/payments/me")).Body.GetProperty("items");
        var pack = packs.EnumerateArray().Single(p => p.GetProperty("kind").GetString() == "token_pack");
        Assert.That(pack.GetProperty("amount").GetInt64(), Is.EqualTo(500));
        await StripeView.AssertBillingMatchesStripeAsync(api, user);

        // The pack stacks on the tier: once the month's 100 uploads are spent, an upload costs 1,500 tokens.
        using var service = Api.Gateway(Tokens.Service());
        var (allowance, spent, _) = await service.PostAsync("/api/usage/consume", Seed.Consume(user, "ai.upload", 100));
        Assert.That(allowance, Is.EqualTo(HttpStatusCode.OK), spent.ToString());
        Assert.That(spent.GetProperty("source").GetString(), Is.EqualTo("quota"));
        var (overage, fromTokens, _) = await service.PostAsync("/api/usage/consume", Seed.Consume(user, "ai.upload", 1));
        Assert.That(overage, Is.EqualTo(HttpStatusCode.OK), fromTokens.ToString());
        Assert.That(fromTokens.GetProperty("source").GetString(), Is.EqualTo("tokens"));
        Assert.That(fromTokens.GetProperty("tokenBalance").GetInt64(), Is.EqualTo(98_500));
        Assert.That((await api.GetAsync("/api/wallet/me")).Body.GetProperty("balance").GetInt64(), Is.EqualTo(98_500));
        Assert.That((await api.GetAsync("/api/usage/me")).Body.GetProperty("tokens").GetProperty("balance").GetInt64(), Is.EqualTo(98_500),
            "the usage view shows the balance after the debit");

        // A streaming call reserves 2 uploads (3,000 tokens), uses 1, and the other 1,500 tokens go back to the wallet.
        var (reservedStatus, reserved, _) = await service.PostAsync("/api/usage/reservations", Seed.Consume(user, "ai.upload", 2));
        Assert.That(reservedStatus, Is.EqualTo(HttpStatusCode.OK), reserved.ToString());
        Assert.That((reserved.GetProperty("source").GetString(), reserved.GetProperty("tokens").GetInt64(), reserved.GetProperty("tokenBalance").GetInt64()),
            Is.EqualTo(("tokens", 3000L, 95_500L)));
        var (committed, commit, _) = await service.PostAsync($"/api/usage/reservations/{reserved.GetProperty("reservationId").GetString()}/commit", new { quantity = 1 });
        Assert.That(committed, Is.EqualTo(HttpStatusCode.OK), commit.ToString());
        Assert.That(commit.GetProperty("tokensReturned").GetInt64(), Is.EqualTo(1500));
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/wallet/me")).Body, w => w.GetProperty("balance").GetInt64() == 97_000,
            "the unused 1,500 tokens back in the wallet");
        // A call that fails before streaming releases its reservation: every token goes back.
        var (heldStatus, held, _) = await service.PostAsync("/api/usage/reservations", Seed.Consume(user, "ai.upload", 3));
        Assert.That(heldStatus, Is.EqualTo(HttpStatusCode.OK), held.ToString());
        Assert.That(held.GetProperty("tokenBalance").GetInt64(), Is.EqualTo(92_500));
        var (releasedStatus, released, _) = await service.PostAsync($"/api/usage/reservations/{held.GetProperty("reservationId").GetString()}/release");
        Assert.That((releasedStatus, released.GetProperty("tokensReturned").GetInt64()), Is.EqualTo((HttpStatusCode.OK, 4500L)), released.ToString());
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/wallet/me")).Body, w => w.GetProperty("balance").GetInt64() == 97_000,
            "the released reservation's 4,500 tokens back in the wallet");

        // Refunding the pack claws its tokens back (Wallet follows Stripe's charge.refunded).
        using var admin = Api.Gateway(Tokens.Admin());
        var (refunded, refund, _) = await admin.PostAsync("/api/admin/refunds", new { paymentId = pack.GetProperty("id").GetString() });
        Assert.That(refunded, Is.EqualTo(HttpStatusCode.OK), refund.ToString());
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/wallet/me")).Body, w => w.GetProperty("balance").GetInt64() == 0, "the claw-back");
        var ledger = (await api.GetAsync("/api/wallet/me/transactions")).Body.GetProperty("items");
        Assert.That(ledger.EnumerateArray().Select(t => t.GetProperty("kind").GetString()), Is.EqualTo(new[] { "refund", "return", "debit", "return", "debit", "debit", "purchase" }));

        // The card was closed: the refund fails, and the tokens come back (the 3,000 spent before it are no longer owed).
        await Simulator.FailRefundAsync(refund.GetProperty("refundId").GetString()!);
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/wallet/me")).Body, w => w.GetProperty("balance").GetInt64() == 97_000,
            "the failed refund's tokens back");
        Assert.That((await api.GetAsync("/api/wallet/me/transactions")).Body.GetProperty("items")[0].GetProperty("kind").GetString(), Is.EqualTo("refund_reversal"));
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/usage/me")).Body, u => u.GetProperty("tokens").GetProperty("balance").GetInt64() == 97_000,
            "the usage view shows the balance given back");

        // A chargeback takes them again; the merchant wins it, and they come back.
        var dispute = await StripeView.DisputeAsync(await StripeView.ChargeOfRefundAsync(refund.GetProperty("refundId").GetString()!));
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/wallet/me")).Body, w => w.GetProperty("balance").GetInt64() == 0, "the chargeback's claw-back");
        await Simulator.CloseDisputeAsync(dispute.GetProperty("id").GetString()!, "won");
        await Eventually.GetAsync(async () => (await api.GetAsync("/api/wallet/me")).Body, w => w.GetProperty("balance").GetInt64() == 97_000,
            "the won chargeback's tokens back");
    }
}

[TestFixture]
[Category("seed")]
[Category("seed-learning-community")]
[NonParallelizable]
public class A_plan_switched_in_the_customer_portal
{
    [Test]
    public async Task While_a_downgrade_is_pending_is_the_users_plan_from_then_on()
    {
        // Creator paid for the quarter, a downgrade to Community Pro waits for its end. Then, in Stripe's customer portal (the
        // README says to switch plan switching off there; a Dashboard change is the same), a switch to Pro Learn: Stripe
        // bills Pro Learn from now, so Pro Learn is the user's plan, with its limits — not Creator until the quarter ends.
        var user = Seed.NewUser("learn-portal");
        using var api = Api.Gateway(Tokens.User(user));
        await Paying_for_Pro.SubscribeAsync(api, "creator", "month", 3);
        var (downgraded, downgrade, _) = await api.PostAsync("/api/subscriptions/me/change",
            new { planId = "community_pro", interval = "month", intervalCount = 3 });
        Assert.That(downgraded, Is.EqualTo(HttpStatusCode.OK), downgrade.ToString());
        var pending = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("scheduledChange").ValueKind == JsonValueKind.Object, "the downgrade to show as pending");
        Assert.That(pending.GetProperty("planId").GetString(), Is.EqualTo("creator"), "paid for until the quarter ends");

        var (opened, portal, _) = await api.PostAsync("/api/billing-portal");
        Assert.That(opened, Is.EqualTo(HttpStatusCode.OK), portal.ToString());
        var subscription = await StripeView.SubscriptionOfAsync(user);
        await Simulator.PortalSwitchAsync(portal.GetProperty("url").GetString()!, subscription.GetProperty("id").GetString()!,
            await StripeView.PriceIdAsync("pro_learn_month3"));

        var switched = await Eventually.GetAsync(async () => (await api.GetAsync("/api/subscriptions/me")).Body,
            s => s.GetProperty("planId").GetString() == "pro_learn", "the plan Stripe bills to be the user's");
        Assert.That(switched.GetProperty("scheduledChange").ValueKind, Is.EqualTo(JsonValueKind.Null), "nothing waits any more");
        await Seed.MeterAsync(api, "ai.upload", m => m.GetProperty("limit").GetInt64() == 300);
        await StripeView.AssertBillingMatchesStripeAsync(api, user);
    }
}
