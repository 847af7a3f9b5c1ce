using System.Globalization;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;

namespace Billing.Usage.Tests;

/// <summary>Catalogs/overage-catalog.json: <c>api.credit</c> pays with purchased tokens (10 a unit) past Pro's 5 a month.</summary>
[TestFixture]
[NonParallelizable]
public class Paying_with_purchased_tokens
{
    private static UsageHost Host => Hosts.Overage;

    private static void WalletAnswers(string user, int status, object body) =>
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/debit").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .RespondWith(Response.Create().WithStatusCode(status).WithHeader("Content-Type", status == 200 ? "application/json" : "application/problem+json")
                .WithBodyAsJson(body));

    private static int DebitsOf(string user) =>
        Host.Stubs.LogEntries.Count(e => e.RequestMessage.Path == "/internal/wallet/debit" && (e.RequestMessage.Body ?? "").Contains(user));

    private static async Task<string> ProUserAsync()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user, "pro"));
        return user;
    }

    [Test]
    public async Task The_window_pays_first_then_Wallet_debits_the_whole_spend_once_under_the_same_key()
    {
        var user = await ProUserAsync();
        WalletAnswers(user, 200, new { debited = true, balance = 970, transactionId = "tx-1" });
        var (quota, fromQuota) = await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 4, meter: "api.credit");
        Assert.That(quota, Is.EqualTo(HttpStatusCode.OK), fromQuota.ToString());
        Assert.That(fromQuota.GetProperty("source").GetString(), Is.EqualTo("quota"));
        Assert.That(DebitsOf(user), Is.Zero);

        var key = UsageHost.NewKey();
        var (status, body) = await Host.ConsumeAsync(user, key, quantity: 3, meter: "api.credit");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("source").GetString(), Is.EqualTo("tokens"));
        Assert.That(body.GetProperty("tokenBalance").GetInt64(), Is.EqualTo(970));
        Assert.That(body.GetProperty("remaining").GetInt64(), Is.EqualTo(1), "not split: the window keeps its last unit");
        var debit = JsonDocument.Parse(Host.Stubs.LogEntries.Last(e => e.RequestMessage.Path == "/internal/wallet/debit").RequestMessage.Body!).RootElement;
        Assert.That((debit.GetProperty("amount").GetInt64(), debit.GetProperty("idempotencyKey").GetString()),
            Is.EqualTo((30L, "consume:" + body.GetProperty("consumptionId").GetString())), "one Wallet key per claim, never the caller's key");
        Assert.That(Host.Stubs.LogEntries.Last().RequestMessage.Headers!["Authorization"].Single(), Does.StartWith("Bearer "));

        var (again, againBody) = await Host.ConsumeAsync(user, key, quantity: 3, meter: "api.credit");
        Assert.That(again, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(againBody.ToString(), Is.EqualTo(body.ToString()));
        Assert.That(DebitsOf(user), Is.EqualTo(1), "the retry is answered from the record, Wallet is not asked again");
        Assert.That((await Host.MeterAsync(user, "api.credit")).GetProperty("used").GetInt64(), Is.EqualTo(4));
    }

    [Test]
    public async Task Too_few_tokens_is_402_insufficient_tokens_with_the_quotas_fields()
    {
        var user = await ProUserAsync();
        WalletAnswers(user, 402, new { code = "insufficient_tokens", balance = 12, status = 402, title = "Not enough tokens." });
        var (status, problem) = await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 6, meter: "api.credit");
        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired), problem.ToString());
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("insufficient_tokens"));
        Assert.That(problem.GetProperty("balance").GetInt64(), Is.EqualTo(12));
        Assert.That(problem.GetProperty("limit").GetInt64(), Is.EqualTo(5));
        Assert.That(problem.GetProperty("meter").GetString(), Is.EqualTo("api.credit"));
        Assert.That(problem.TryGetProperty("resetsAt", out _), Is.True);
        Assert.That((await Host.MeterAsync(user, "api.credit")).GetProperty("used").GetInt64(), Is.Zero);
    }

    [Test]
    public async Task A_spend_costing_more_tokens_than_one_debit_may_move_is_402_insufficient_tokens_without_asking_Wallet()
    {
        var user = UsageHost.NewUser();
        // What Wallet answers an amount over 10^12: a validation error, which is not an answer about the tokens.
        WalletAnswers(user, 400, new { code = "validation_failed", status = 400, title = "The request is not valid." });
        var key = UsageHost.NewKey();
        var (status, problem) = await Host.ConsumeAsync(user, key, quantity: 1_000_000_000, meter: "video.second");
        Assert.That((status, problem.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.PaymentRequired, "insufficient_tokens")), problem.ToString());
        Assert.That(problem.GetProperty("requested").GetInt64(), Is.EqualTo(5_000_000_000_000));
        Assert.That(DebitsOf(user), Is.Zero, "no debit Wallet would refuse as invalid");
        var (again, same) = await Host.ConsumeAsync(user, key, quantity: 1_000_000_000, meter: "video.second");
        Assert.That((again, same.GetProperty("code").GetString(), same.GetProperty("detail").GetString()),
            Is.EqualTo((HttpStatusCode.PaymentRequired, "insufficient_tokens", problem.GetProperty("detail").GetString())), "the key keeps its first answer");
        Assert.That(DebitsOf(user), Is.Zero);
    }

    [Test]
    public async Task Wallet_unreachable_is_503_spends_nothing_and_the_same_key_can_be_retried()
    {
        var user = await ProUserAsync();
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/debit").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .AtPriority(1).RespondWith(Response.Create().WithStatusCode(500));
        var key = UsageHost.NewKey();
        var (status, problem) = await Host.ConsumeAsync(user, key, quantity: 6, meter: "api.credit");
        Assert.That(status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), problem.ToString());
        Assert.That(problem.GetProperty("code").GetString(), Is.EqualTo("wallet_unavailable"));
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM consumptions WHERE user_id = @user AND allowed", new { user }), Is.Zero);

        Host.Stubs.ResetMappings();
        WalletAnswers(user, 200, new { debited = true, balance = 40, transactionId = "tx-2" });
        var (retried, body) = await Host.ConsumeAsync(user, key, quantity: 6, meter: "api.credit");
        Assert.That(retried, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("source").GetString(), Is.EqualTo("tokens"));
    }

    [Test]
    public async Task A_retry_after_a_plan_change_debits_the_tokens_the_spend_cost_when_it_was_claimed()
    {
        var user = UsageHost.NewUser();
        var pro = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(pro);
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 5, meter: "api.credit")).Status, Is.EqualTo(HttpStatusCode.OK));
        // Wallet's answer to the first debit is lost (it may have debited): the claim stays open.
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/debit").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .AtPriority(1).RespondWith(Response.Create().WithStatusCode(500));
        var key = UsageHost.NewKey();
        Assert.That((await Host.ConsumeAsync(user, key, quantity: 3, meter: "api.credit")).Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable));

        // Business pays credits at 5 tokens instead of Pro's 10; the retry under the same key still asks for the first price,
        // or Wallet, which may hold a debit of 30 under the claim's key, would refuse it as another debit.
        await Host.ApplyAsync(UsageHost.Updated(pro, "active", sequence: 2, planId: "business"));
        Host.Stubs.ResetMappings();
        WalletAnswers(user, 200, new { debited = true, balance = 70, transactionId = "tx-first" });
        var (other, otherBody) = await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 1, meter: "api.credit"); // at Business's price
        Assert.That(other, Is.EqualTo(HttpStatusCode.OK), otherBody.ToString());
        var (status, body) = await Host.ConsumeAsync(user, key, quantity: 3, meter: "api.credit");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var amounts = Host.Stubs.LogEntries.Where(e => e.RequestMessage.Path == "/internal/wallet/debit" && (e.RequestMessage.Body ?? "").Contains(user))
            .Select(e => JsonDocument.Parse(e.RequestMessage.Body!).RootElement.GetProperty("amount").GetInt64()).ToList();
        Assert.That(amounts, Is.EqualTo(new[] { 30L, 5L, 30L }));
    }

    [Test]
    public async Task A_request_whose_Wallet_debit_answers_after_the_claim_timeout_does_not_record_an_allowed_spend()
    {
        var user = await ProUserAsync();
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/debit").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .AtPriority(1).RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json")
                .WithBodyAsJson(new { debited = true, balance = 40, transactionId = "tx-slow" }).WithDelay(TimeSpan.FromSeconds(3)));
        // Wallet is slow to give the tokens back too: the debit's answer arrives while the sweeper is returning them.
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/returns").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json")
                .WithBodyAsJson(new { debited = true, returned = 60, balance = 100 }).WithDelay(TimeSpan.FromSeconds(4)));
        var key = UsageHost.NewKey();
        try
        {
            var consuming = Host.ConsumeAsync(user, key, quantity: 6, meter: "api.credit");
            await Task.Delay(TimeSpan.FromSeconds(1)); // Wallet's debit is on its way (WireMock logs it only once it has answered)
            // While Wallet is answering, the claim passes the sweeper's timeout (120 s): the sweeper gives the tokens back.
            Host.Clock.Advance(TimeSpan.FromSeconds(150));
            var (status, body) = await consuming;
            Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
            Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("consume_expired"), body.ToString());

            await UsageHost.EventuallyAsync(async () =>
                await Host.ScalarAsync("SELECT status_code FROM consumptions WHERE idempotency_key = @key", new { key }) == 409, TimeSpan.FromSeconds(10));
            Assert.That(Host.Stubs.LogEntries.Count(e => e.RequestMessage.Path == "/internal/wallet/returns" && (e.RequestMessage.Body ?? "").Contains(user)),
                Is.GreaterThanOrEqualTo(1), "what Wallet took is asked back");
            Assert.That(await Host.ScalarAsync("SELECT count(*) FROM consumptions WHERE user_id = @user AND allowed AND meter = 'api.credit'", new { user }),
                Is.Zero, "never allowed with its tokens given back");
        }
        finally
        {
            Host.Clock.Reset();
        }
    }

    [Test]
    public async Task A_request_held_up_behind_a_sweeper_that_gave_the_tokens_back_and_then_failed_does_not_record_an_allowed_spend()
    {
        var user = await ProUserAsync();
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/debit").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .AtPriority(1).RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json")
                .WithBodyAsJson(new { debited = true, balance = 40, transactionId = "tx-held" }).WithDelay(TimeSpan.FromSeconds(2)));
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/returns").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json")
                .WithBodyAsJson(new { debited = true, returned = 60, balance = 100 }));
        var key = UsageHost.NewKey();
        try
        {
            var consuming = Host.ConsumeAsync(user, key, quantity: 6, meter: "api.credit");
            // The claim is priced (its row updated and committed) just before Wallet is asked: from then on the row is free.
            await UsageHost.EventuallyAsync(async () => await Host.ScalarAsync(
                "SELECT count(*) FROM consumptions WHERE idempotency_key = @key AND claim_tokens IS NOT NULL", new { key }) == 1, TimeSpan.FromSeconds(10));

            // The sweeper's part, played here: it holds the claim's row while Wallet gives the tokens back, long after the
            // claim was made; the request, whose debit answers meanwhile, waits for the row.
            await using var sweeper = new Npgsql.NpgsqlConnection(Host.ConnectionString);
            await sweeper.OpenAsync();
            await using var held = await sweeper.BeginTransactionAsync();
            await using (var lockRow = new Npgsql.NpgsqlCommand("SELECT 1 FROM consumptions WHERE idempotency_key = @key FOR UPDATE", sweeper, held))
            {
                lockRow.Parameters.AddWithValue("key", key);
                await lockRow.ExecuteScalarAsync();
            }
            await UsageHost.EventuallyAsync(async () => await Host.ScalarAsync(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%usage_lock_claim%' AND query NOT LIKE '%pg_stat_activity%'") >= 1,
                TimeSpan.FromSeconds(10));
            Host.Clock.Advance(TimeSpan.FromSeconds(150));
            // ... and then its transaction fails after Wallet gave the tokens back: the claim is still open.
            await held.RollbackAsync();

            var (status, body) = await consuming;
            Assert.That((status, body.TryGetProperty("code", out var code) ? code.GetString() : null),
                Is.EqualTo((HttpStatusCode.Conflict, "consume_expired")), body.ToString());
            await UsageHost.EventuallyAsync(async () =>
                await Host.ScalarAsync("SELECT status_code FROM consumptions WHERE idempotency_key = @key", new { key }) == 409, TimeSpan.FromSeconds(10));
            Assert.That(await Host.ScalarAsync("SELECT count(*) FROM consumptions WHERE user_id = @user AND allowed AND meter = 'api.credit'", new { user }),
                Is.Zero, "never allowed with its tokens given back");
        }
        finally
        {
            Host.Clock.Reset();
        }
    }

    [Test]
    public async Task A_claim_nobody_finishes_is_expired_by_the_sweeper_and_Wallet_gives_back_what_it_took()
    {
        var user = await ProUserAsync();
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/debit").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .AtPriority(1).RespondWith(Response.Create().WithStatusCode(500));
        Host.Stubs.Given(Request.Create().WithPath("/internal/wallet/returns").UsingPost().WithBody(b => b != null && b.Contains(user)))
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json")
                .WithBodyAsJson(new { debited = true, returned = 60, balance = 100 }));
        var key = UsageHost.NewKey();
        var (status, _) = await Host.ConsumeAsync(user, key, quantity: 6, meter: "api.credit");
        Assert.That(status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), "Wallet's answer is lost: the claim stays open");

        try
        {
            // Past half the claim timeout (120 s) a retry no longer debits: the claim is left to the sweeper.
            Host.Clock.Advance(TimeSpan.FromSeconds(90));
            var (late, problem) = await Host.ConsumeAsync(user, key, quantity: 6, meter: "api.credit");
            Assert.That((late, problem.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.Conflict, "consume_expired")), problem.ToString());
            Assert.That(DebitsOf(user), Is.EqualTo(1), "the late retry did not ask Wallet to debit");

            Host.Clock.Advance(TimeSpan.FromSeconds(60));
            await UsageHost.EventuallyAsync(async () =>
                await Host.ScalarAsync("SELECT status_code FROM consumptions WHERE idempotency_key = @key", new { key }) == 409, TimeSpan.FromSeconds(10));
            var returned = Host.Stubs.LogEntries.Where(e => e.RequestMessage.Path == "/internal/wallet/returns" && (e.RequestMessage.Body ?? "").Contains(user))
                .Select(e => JsonDocument.Parse(e.RequestMessage.Body!).RootElement).ToList();
            var consumptionId = await Host.ScalarTextAsync("SELECT consumption_id::text FROM consumptions WHERE idempotency_key = @key", new { key });
            Assert.That(returned.Select(r => (r.GetProperty("idempotencyKey").GetString(), r.GetProperty("all").GetBoolean())).Distinct(),
                Is.EqualTo(new[] { ("consume:" + consumptionId, true) }), "all Wallet took under the claim's debit key is asked back");
            var (replay, expired) = await Host.ConsumeAsync(user, key, quantity: 6, meter: "api.credit");
            Assert.That((replay, expired.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.Conflict, "consume_expired")));
            Assert.That(await Host.ScalarAsync("SELECT count(*) FROM consumptions WHERE user_id = @user AND allowed AND meter = 'api.credit'", new { user }),
                Is.Zero);
        }
        finally
        {
            Host.Clock.Reset();
        }
    }

    [Test]
    public async Task A_free_user_pays_every_credit_with_tokens()
    {
        var user = UsageHost.NewUser();
        WalletAnswers(user, 200, new { debited = true, balance = 90, transactionId = "tx-3" });
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "api.credit");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("source").GetString(), Is.EqualTo("tokens"));
    }
}

/// <summary>Catalogs/overage-catalog.json: Pro's <c>chat.message</c> is billed past 3 a day (Stripe meter event <c>chat_messages_overage</c>).</summary>
[TestFixture]
[NonParallelizable]
public class Billing_overage_through_Stripe_meter_events
{
    private static UsageHost Host => Hosts.Overage;

    private static IEnumerable<IDictionary<string, string>> MeterEventsFor(string customer) =>
        Host.Stubs.LogEntries
            .Where(e => e.RequestMessage.Path == "/v1/billing/meter_events" && (e.RequestMessage.Body ?? "").Contains(customer))
            .Select(e => (IDictionary<string, string>)System.Web.HttpUtility.ParseQueryString(e.RequestMessage.Body!)
                .AllKeys.ToDictionary(k => k!, k => System.Web.HttpUtility.ParseQueryString(e.RequestMessage.Body!)[k]!));

    /// <summary>A new Pro user (chat messages billed past 3 a day), with Stripe's meter event endpoint answering 200.</summary>
    private static async Task<(string User, Billing.Contracts.SubscriptionActivated Activated)> ProUserWithStripeAcceptingMeterEventsAsync()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(activated);
        Host.Stubs.Given(Request.Create().WithPath("/v1/billing/meter_events").UsingPost())
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json")
                .WithBody("""{"object":"billing.meter_event","event_name":"chat_messages_overage","identifier":"x","payload":{},"timestamp":1,"created":1,"livemode":false}"""));
        return (user, activated);
    }

    [Test]
    public async Task Spends_past_the_limit_are_allowed_recorded_and_reported_once_with_the_consumption_id()
    {
        var (user, activated) = await ProUserWithStripeAcceptingMeterEventsAsync();

        var (first, quota) = await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 2, meter: "chat.message");
        Assert.That(quota.GetProperty("source").GetString(), Is.EqualTo("quota"), quota.ToString());
        var key = UsageHost.NewKey();
        var (status, body) = await Host.ConsumeAsync(user, key, quantity: 4, meter: "chat.message");
        Assert.That((first, status), Is.EqualTo((HttpStatusCode.OK, HttpStatusCode.OK)), body.ToString());
        Assert.That(body.GetProperty("source").GetString(), Is.EqualTo("overage"));
        Assert.That(body.GetProperty("remaining").GetInt64(), Is.Zero);
        Assert.That((await Host.ConsumeAsync(user, key, quantity: 4, meter: "chat.message")).Body.ToString(), Is.EqualTo(body.ToString()));

        var consumptionId = body.GetProperty("consumptionId").GetString()!;
        await UsageHost.EventuallyAsync(() => Task.FromResult(MeterEventsFor(activated.CustomerId).Any()), TimeSpan.FromSeconds(10));
        var sent = MeterEventsFor(activated.CustomerId).ToList();
        Assert.That(sent, Has.Count.EqualTo(1));
        Assert.That(sent[0]["identifier"], Is.EqualTo(consumptionId));
        Assert.That(sent[0]["event_name"], Is.EqualTo("chat_messages_overage"));
        Assert.That(sent[0]["payload[value]"], Is.EqualTo("3"), "2 + 4 against 3: three units past the limit");
        await UsageHost.EventuallyAsync(async () =>
            await Host.ScalarAsync("SELECT count(*) FROM usage_overage WHERE user_id = @user AND reported_at IS NOT NULL", new { user }) == 1);
    }

    [Test]
    public async Task Overage_reported_after_its_periods_invoice_was_finalized_goes_on_the_next_invoice()
    {
        var (user, activated) = await ProUserWithStripeAcceptingMeterEventsAsync();
        // The period started two hours ago; one spend from before it (its invoice final by now) and one from within it were
        // not reported yet (Stripe was unreachable).
        var periodStart = Host.Clock.GetUtcNow().AddHours(-2);
        await Host.ScalarAsync("UPDATE usage_subjects SET period_start = @periodStart WHERE user_id = @user", new { periodStart, user });
        var (late, current) = (Guid.NewGuid(), Guid.NewGuid());
        var (lateAt, currentAt) = (periodStart.AddHours(-1), periodStart.AddHours(1));
        foreach (var (id, at) in new[] { (late, lateAt), (current, currentAt) })
        {
            await Host.ScalarAsync("""
                INSERT INTO usage_overage (consumption_id, user_id, meter, event_name, quantity, occurred_at, next_attempt_at)
                VALUES (@id, @user, 'chat.message', 'chat_messages_overage', 2, @at, @at)
                """, new { id, user, at });
        }

        await UsageHost.EventuallyAsync(() => Task.FromResult(MeterEventsFor(activated.CustomerId).Count() == 2), TimeSpan.FromSeconds(10));

        var sent = MeterEventsFor(activated.CustomerId).ToDictionary(e => e["identifier"], e => long.Parse(e["timestamp"], CultureInfo.InvariantCulture));
        Assert.That(sent[current.ToString()], Is.EqualTo(currentAt.ToUnixTimeSeconds()), "within the current period: its own time");
        Assert.That(sent[late.ToString()], Is.GreaterThanOrEqualTo(Host.Clock.GetUtcNow().AddMinutes(-1).ToUnixTimeSeconds()),
            "from a period whose invoice is final: now, so the next invoice bills it");
        Assert.That(await Host.ScalarAsync("SELECT extract(epoch FROM report_at)::bigint FROM usage_overage WHERE consumption_id = @late", new { late }),
            Is.EqualTo(sent[late.ToString()]), "the time is kept on the row: a retry sends the same event under the same idempotency key");
    }

    [Test]
    public async Task Overage_of_a_period_that_ended_before_Usage_heard_of_the_renewal_goes_on_the_next_invoice_too()
    {
        // Stripe was unreachable around the period's end, so Payments could not apply the renewal either: Usage still has
        // the period that ended 55 minutes ago. A spend from its last minutes must not be reported into it (its invoice is
        // final by now, and it would be billed nowhere).
        var (user, activated) = await ProUserWithStripeAcceptingMeterEventsAsync();
        var periodEnd = Host.Clock.GetUtcNow().AddMinutes(-55);
        await Host.ScalarAsync("UPDATE usage_subjects SET period_start = @start, period_end = @periodEnd WHERE user_id = @user",
            new { start = periodEnd.AddMonths(-1), periodEnd, user });
        var spend = Guid.NewGuid();
        var at = periodEnd.AddMinutes(-10);
        await Host.ScalarAsync("""
            INSERT INTO usage_overage (consumption_id, user_id, meter, event_name, quantity, occurred_at, next_attempt_at)
            VALUES (@spend, @user, 'chat.message', 'chat_messages_overage', 2, @at, @at)
            """, new { spend, user, at });

        await UsageHost.EventuallyAsync(() => Task.FromResult(MeterEventsFor(activated.CustomerId).Any()), TimeSpan.FromSeconds(10));

        var sent = MeterEventsFor(activated.CustomerId).Single(e => e["identifier"] == spend.ToString());
        Assert.That(long.Parse(sent["timestamp"], CultureInfo.InvariantCulture), Is.GreaterThanOrEqualTo(Host.Clock.GetUtcNow().AddMinutes(-1).ToUnixTimeSeconds()),
            "now, so the next invoice bills it");
    }

    [Test]
    public async Task Verify_reports_overage_Stripe_has_not_taken_for_over_half_an_hour()
    {
        // Stripe refuses it for good (a customer it does not know, a deleted meter): retried every minute, and verify says so.
        var user = UsageHost.NewUser();
        var before = await Host.VerifyAsync();
        var at = Host.Clock.GetUtcNow().AddHours(-1);
        await Host.ScalarAsync("""
            INSERT INTO usage_overage (consumption_id, user_id, meter, event_name, quantity, occurred_at, next_attempt_at, attempts, last_error)
            VALUES (gen_random_uuid(), @user, 'chat.message', 'chat_messages_overage', 2, @at, @next, 40, 'No such customer')
            """, new { user, at, next = Host.Clock.GetUtcNow().AddHours(1) });

        var after = await Host.VerifyAsync();

        Assert.That(after.GetProperty("ok").GetBoolean(), Is.False, after.ToString());
        Assert.That(after.GetProperty("overageUnreportedLate").GetInt64(), Is.EqualTo(before.GetProperty("overageUnreportedLate").GetInt64() + 1));
        Assert.That(after.GetProperty("overageLastError").GetString(), Is.Not.Null);
        await Host.ScalarAsync("UPDATE usage_overage SET reported_at = now() WHERE user_id = @user", new { user });
    }

    [Test]
    public async Task A_failing_Stripe_is_retried_and_an_already_known_identifier_counts_as_reported()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(activated);
        Host.Stubs.Given(Request.Create().WithPath("/v1/billing/meter_events").UsingPost().WithBody(b => b != null && b.Contains(activated.CustomerId)))
            .InScenario(user).WillSetStateTo("failed once")
            .RespondWith(Response.Create().WithStatusCode(500).WithBody("""{"error":{"type":"api_error","message":"boom"}}"""));
        Host.Stubs.Given(Request.Create().WithPath("/v1/billing/meter_events").UsingPost().WithBody(b => b != null && b.Contains(activated.CustomerId)))
            .InScenario(user).WhenStateIs("failed once")
            .RespondWith(Response.Create().WithStatusCode(400).WithHeader("Content-Type", "application/json")
                .WithBody("""{"error":{"type":"invalid_request_error","message":"An event already exists with identifier x.","param":"identifier"}}"""));

        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 5, meter: "chat.message");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        await UsageHost.EventuallyAsync(async () =>
            await Host.ScalarAsync("SELECT count(*) FROM usage_overage WHERE user_id = @user AND reported_at IS NOT NULL", new { user }) == 1,
            TimeSpan.FromSeconds(20));
        Assert.That(MeterEventsFor(activated.CustomerId).Count(), Is.GreaterThanOrEqualTo(2));
        Assert.That(MeterEventsFor(activated.CustomerId).Select(e => e["identifier"]).Distinct().Single(), Is.EqualTo(body.GetProperty("consumptionId").GetString()));
    }

    [Test]
    public async Task A_reservation_on_a_billed_meter_bills_only_the_committed_units_past_the_limit()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(activated);
        var (status, reserved) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 10, meter: "chat.message");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), reserved.ToString());
        Assert.That(reserved.GetProperty("source").GetString(), Is.EqualTo("overage"));
        var (committed, body) = await Reserving_for_a_streaming_call.SettleAsync(Host, reserved.GetProperty("reservationId").GetString()!, "commit", 5);
        Assert.That(committed, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(await Host.ScalarAsync("SELECT quantity FROM usage_overage WHERE user_id = @user", new { user }), Is.EqualTo(2));
        Assert.That((await Host.MeterAsync(user, "chat.message")).GetProperty("used").GetInt64(), Is.EqualTo(5));
    }

    [Test]
    public async Task A_commit_after_an_upgrade_bills_only_what_passes_the_new_limit()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(activated);
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 2, meter: "chat.message")).Status, Is.EqualTo(HttpStatusCode.OK));
        var (_, reserved) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 5, meter: "chat.message"); // 2 + 5 of Pro's 3 a day
        // Mid-stream the user upgrades to Business: 10 a day, the same day's window.
        await Host.ApplyAsync(UsageHost.Updated(activated, "active", sequence: 2, planId: "business"));
        var (committed, body) = await Reserving_for_a_streaming_call.SettleAsync(Host, reserved.GetProperty("reservationId").GetString()!, "commit", 5);
        Assert.That(committed, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That((await OverageBilledAsync(user), body.GetProperty("remaining").GetInt64()), Is.EqualTo((0L, 3L)),
            "7 spent of Business's 10: nothing past the limit, 3 left");
    }

    [Test]
    public async Task A_commit_while_past_due_still_bills_what_was_reserved_as_billed_overage()
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(activated);
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), quantity: 2, meter: "chat.message")).Status, Is.EqualTo(HttpStatusCode.OK));
        var (_, reserved) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 5, meter: "chat.message"); // 4 past Pro's 3 a day
        Assert.That(reserved.GetProperty("source").GetString(), Is.EqualTo("overage"), reserved.ToString());
        // Mid-stream the renewal fails: a past-due plan blocks at its limit, but these units were granted as billed overage.
        await Host.ApplyAsync(UsageHost.Updated(activated, "past_due", sequence: 2));
        var (committed, body) = await Reserving_for_a_streaming_call.SettleAsync(Host, reserved.GetProperty("reservationId").GetString()!, "commit", 5);
        Assert.That(committed, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(await OverageBilledAsync(user), Is.EqualTo(4), "7 spent of 3: 4 past the limit");
    }

    /// <summary>Pro's chat.message: 3 a day, billed past it. What is billed adds up to what is spent past the limit.</summary>
    private async Task<long> OverageBilledAsync(string user) =>
        await Host.ScalarAsync("SELECT COALESCE(SUM(quantity), 0) FROM usage_overage WHERE user_id = @user", new { user });

    [Test]
    public async Task Consumes_made_while_a_reservation_holds_the_window_are_not_billed_when_it_is_released()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user, "pro"));
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "chat.message")).Status, Is.EqualTo(HttpStatusCode.OK));
        var (_, reserved) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 5, meter: "chat.message"); // holds 2 + 3 past
        var (status, body) = await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "chat.message");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var (released, _) = await Reserving_for_a_streaming_call.SettleAsync(Host, reserved.GetProperty("reservationId").GetString()!, "release");
        Assert.That(released, Is.EqualTo(HttpStatusCode.OK));

        Assert.That((await Host.MeterAsync(user, "chat.message")).GetProperty("used").GetInt64(), Is.EqualTo(2));
        Assert.That(await OverageBilledAsync(user), Is.Zero, "2 of 3 spent: nothing past the limit, whatever was held meanwhile");
    }

    [Test]
    public async Task Overlapping_reservations_and_consumes_bill_exactly_what_ends_up_past_the_limit()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user, "pro"));
        var (_, first) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 4, meter: "chat.message");
        var (_, second) = await Reserving_for_a_streaming_call.ReserveAsync(Host, user, 4, meter: "chat.message");
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "chat.message")).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Reserving_for_a_streaming_call.SettleAsync(Host, first.GetProperty("reservationId").GetString()!, "release")).Status,
            Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Reserving_for_a_streaming_call.SettleAsync(Host, second.GetProperty("reservationId").GetString()!, "commit", 3)).Status,
            Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Host.ConsumeAsync(user, UsageHost.NewKey(), meter: "chat.message")).Status, Is.EqualTo(HttpStatusCode.OK));

        Assert.That((await Host.MeterAsync(user, "chat.message")).GetProperty("used").GetInt64(), Is.EqualTo(5));
        Assert.That(await OverageBilledAsync(user), Is.EqualTo(2), "5 spent against 3: 2 billed, once");
        Assert.That(await Host.ScalarAsync("SELECT held FROM usage_counters WHERE user_id = @user", new { user }), Is.Zero, "nothing held any more");
    }
}

/// <summary>
/// <c>GET /api/admin/usage/overage-check</c>: the overage Usage reported against what Stripe's meter counted for the same
/// customer and range (Stripe answers a meter event 200 and may reject it afterwards; the check is how that shows).
/// </summary>
[TestFixture]
[NonParallelizable]
public class Checking_reported_overage_against_Stripes_meters
{
    private static UsageHost Host => Hosts.Overage;

    private const string MeterId = "mtr_chat_overage";

    [OneTimeSetUp]
    public void StripeHasTheMeter() =>
        Host.Stubs.Given(Request.Create().WithPath("/v1/billing/meters").UsingGet())
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json").WithBody($$"""
                {"object":"list","url":"/v1/billing/meters","has_more":false,"data":[
                  {"id":"{{MeterId}}","object":"billing.meter","event_name":"chat_messages_overage","status":"active","created":1700000000,
                   "default_aggregation":{"formula":"sum"},"display_name":"Chat messages overage","livemode":false},
                  {"id":"mtr_replaced","object":"billing.meter","event_name":"chat_messages_overage","status":"inactive","created":1600000000,
                   "default_aggregation":{"formula":"sum"},"display_name":"Chat messages overage (old)","livemode":false}]}
                """));

    /// <summary>Stripe's meter counted <paramref name="value"/> for the customer (any range).</summary>
    private static void StripeCounted(string customer, double value) =>
        Host.Stubs.Given(Request.Create().WithPath($"/v1/billing/meters/{MeterId}/event_summaries").UsingGet().WithParam("customer", customer))
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json").WithBody($$"""
                {"object":"list","url":"/v1/billing/meters/{{MeterId}}/event_summaries","has_more":false,"data":[
                  {"id":"mtrusg_1","object":"billing.meter_event_summary","aggregated_value":{{value.ToString(CultureInfo.InvariantCulture)}},
                   "start_time":1,"end_time":2,"meter":"{{MeterId}}","livemode":false}]}
                """));

    /// <summary>A Pro user whose overage rows were reported at the given times (and one not reported yet).</summary>
    private static async Task<(string User, string Customer)> UserWithReportedOverageAsync(params (long Units, DateTimeOffset At)[] reported)
    {
        var user = UsageHost.NewUser();
        var activated = UsageHost.Activated(user, "pro");
        await Host.ApplyAsync(activated);
        foreach (var (units, at) in reported)
        {
            await Host.ScalarAsync("""
                INSERT INTO usage_overage (consumption_id, user_id, meter, event_name, quantity, occurred_at, report_at, next_attempt_at, reported_at, attempts)
                VALUES (gen_random_uuid(), @user, 'chat.message', 'chat_messages_overage', @units, @at, @at, @at, @at, 1)
                """, new { user, units, at });
        }
        await Host.ScalarAsync("""
            INSERT INTO usage_overage (consumption_id, user_id, meter, event_name, quantity, occurred_at, next_attempt_at, attempts, last_error)
            VALUES (gen_random_uuid(), @user, 'chat.message', 'chat_messages_overage', 1000, @at, @next, 3, 'boom')
            """, new { user, at = Host.Clock.GetUtcNow().AddHours(-2), next = Host.Clock.GetUtcNow().AddHours(1) });
        return (user, activated.CustomerId);
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> CheckAsync(string query, string? token = null)
    {
        using var client = Host.CreateClient();
        client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token ?? Tokens.Admin());
        var response = await client.GetAsync("/api/admin/usage/overage-check" + query);
        return (response.StatusCode, await UsageHost.BodyAsync(response));
    }

    private static string Iso(DateTimeOffset at) => Uri.EscapeDataString(at.ToString("O", CultureInfo.InvariantCulture));

    [Test]
    public async Task Overage_Stripe_counted_in_full_matches()
    {
        var now = Host.Clock.GetUtcNow();
        var (user, customer) = await UserWithReportedOverageAsync((2, now.AddHours(-3)), (3, now.AddHours(-1)));
        StripeCounted(customer, 5);

        var (status, body) = await CheckAsync($"?userId={user}");

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That((body.GetProperty("ok").GetBoolean(), body.GetProperty("checked").GetInt32(), body.GetProperty("matched").GetInt32(),
            body.GetProperty("more").GetBoolean(), body.GetProperty("differences").GetArrayLength()), Is.EqualTo((true, 1, 1, false, 0)), body.ToString());
        var to = body.GetProperty("to").GetDateTimeOffset();
        Assert.That(to, Is.LessThanOrEqualTo(now.AddMinutes(-10)).And.GreaterThan(now.AddMinutes(-11)), "by default up to 10 minutes ago: Stripe aggregates late");
        Assert.That((to.Second, to.Millisecond), Is.EqualTo((0, 0)), "on a minute boundary, as Stripe's summaries need");
        Assert.That(to - body.GetProperty("from").GetDateTimeOffset(), Is.EqualTo(TimeSpan.FromDays(7)));
        var asked = Host.Stubs.LogEntries.Last(e => e.RequestMessage.Path == $"/v1/billing/meters/{MeterId}/event_summaries"
            && e.RequestMessage.Query!["customer"].Single() == customer).RequestMessage.Query!;
        Assert.That((long.Parse(asked["start_time"].Single(), CultureInfo.InvariantCulture), long.Parse(asked["end_time"].Single(), CultureInfo.InvariantCulture)),
            Is.EqualTo((body.GetProperty("from").GetDateTimeOffset().ToUnixTimeSeconds(), to.ToUnixTimeSeconds())),
            "the active meter of the event name, over the same range");
    }

    [Test]
    public async Task Fewer_units_in_Stripe_than_reported_is_a_difference_with_both_figures()
    {
        var now = Host.Clock.GetUtcNow();
        var (user, customer) = await UserWithReportedOverageAsync((2, now.AddHours(-3)), (3, now.AddHours(-1)), (4, now.AddDays(-9)));
        StripeCounted(customer, 2); // the event of 3 was rejected after Stripe had accepted it

        var (status, body) = await CheckAsync($"?userId={user}&from={Iso(now.AddDays(-2))}&to={Iso(now)}");

        Assert.That((status, body.GetProperty("ok").GetBoolean()), Is.EqualTo((HttpStatusCode.OK, false)), body.ToString());
        var difference = body.GetProperty("differences").EnumerateArray().Single();
        Assert.That((difference.GetProperty("customerId").GetString(), difference.GetProperty("userIds")[0].GetString(),
                difference.GetProperty("meter").GetString(), difference.GetProperty("eventName").GetString(),
                difference.GetProperty("stripeMeterId").GetString(), difference.GetProperty("billingUnits").GetInt64(),
                difference.GetProperty("stripeUnits").GetDecimal(), difference.GetProperty("error").ValueKind),
            Is.EqualTo((customer, user, "chat.message", "chat_messages_overage", MeterId, 5L, 2m, JsonValueKind.Null)),
            "2 + 3 reported in the range (the 4 of nine days ago and the unreported 1,000 are not); Stripe counted 2");
        Assert.That(body.GetProperty("to").GetDateTimeOffset(), Is.GreaterThanOrEqualTo(now), "an explicit end is rounded up to its minute");
        var (_, later) = await CheckAsync($"?userId={user}&from={Iso(now.AddDays(-2))}&to={Iso(now.AddDays(3))}");
        Assert.That(later.GetProperty("to").GetDateTimeOffset(), Is.LessThan(Host.Clock.GetUtcNow().AddMinutes(1)), "an end to come is taken as now");
    }

    [Test]
    public async Task A_customer_Stripe_does_not_know_is_a_difference_with_Stripes_error()
    {
        var (user, customer) = await UserWithReportedOverageAsync((2, Host.Clock.GetUtcNow().AddHours(-1)));
        Host.Stubs.Given(Request.Create().WithPath($"/v1/billing/meters/{MeterId}/event_summaries").UsingGet().WithParam("customer", customer))
            .RespondWith(Response.Create().WithStatusCode(404).WithHeader("Content-Type", "application/json")
                .WithBody($$$"""{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such customer: '{{{customer}}}'","param":"customer"} }"""));

        var (status, body) = await CheckAsync($"?userId={user}");

        Assert.That((status, body.GetProperty("ok").GetBoolean()), Is.EqualTo((HttpStatusCode.OK, false)), body.ToString());
        var difference = body.GetProperty("differences").EnumerateArray().Single();
        Assert.That(difference.GetProperty("error").GetString(), Does.Contain("No such customer"));
        Assert.That(difference.GetProperty("stripeUnits").ValueKind, Is.EqualTo(JsonValueKind.Null));
    }

    [Test]
    public async Task A_user_without_reported_overage_checks_nothing_and_asks_Stripe_nothing()
    {
        var user = UsageHost.NewUser();
        var before = Host.Stubs.LogEntries.Count(e => e.RequestMessage.Path.StartsWith("/v1/billing/meters", StringComparison.Ordinal));

        var (status, body) = await CheckAsync($"?userId={user}");

        Assert.That((status, body.GetProperty("ok").GetBoolean(), body.GetProperty("checked").GetInt32()), Is.EqualTo((HttpStatusCode.OK, true, 0)));
        Assert.That(Host.Stubs.LogEntries.Count(e => e.RequestMessage.Path.StartsWith("/v1/billing/meters", StringComparison.Ordinal)), Is.EqualTo(before));
    }

    [Test]
    public async Task Runs_by_itself_once_per_interval_across_replicas_and_logs_each_difference()
    {
        var (_, customer) = await UserWithReportedOverageAsync((7, Host.Clock.GetUtcNow().AddHours(-2)));
        StripeCounted(customer, 6);
        var schedule = Host.Services.GetRequiredService<Billing.Usage.Api.Overage.OverageCheckSchedule>();
        // Due: the last run was 7 hours ago (the interval is 6).
        await Host.ScalarAsync("""
            INSERT INTO usage_job_runs (job, last_run_at) VALUES ('overage-check', @due)
            ON CONFLICT (job) DO UPDATE SET last_run_at = EXCLUDED.last_run_at
            """, new { due = Host.Clock.GetUtcNow().AddHours(-7) });

        var result = await schedule.RunIfDueAsync(CancellationToken.None);
        var again = await schedule.RunIfDueAsync(CancellationToken.None);

        Assert.That(result, Is.Not.Null, "due");
        Assert.That(result!.Differences.Where(d => d.CustomerId == customer).Select(d => (d.BillingUnits, d.StripeUnits)),
            Is.EqualTo(new[] { (7L, (decimal?)6m) }));
        Assert.That(again, Is.Null, "not again within the interval, whichever replica asks");
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM usage_job_runs WHERE job = 'overage-check' AND last_run_at > @since",
            new { since = Host.Clock.GetUtcNow().AddMinutes(-1) }), Is.EqualTo(1), "this run is recorded");
    }

    [Test]
    public async Task Refuses_a_range_it_cannot_check_and_callers_that_are_not_admins()
    {
        var now = Host.Clock.GetUtcNow();
        Assert.That((await CheckAsync($"?from={Iso(now)}&to={Iso(now.AddHours(-1))}")).Status, Is.EqualTo(HttpStatusCode.BadRequest));
        var (old, problem) = await CheckAsync($"?from={Iso(now.AddDays(-40))}");
        Assert.That((old, problem.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.BadRequest, "validation")), "reported overage is kept 35 days");
        Assert.That((await CheckAsync("?limit=0")).Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await CheckAsync("", Tokens.Service())).Status, Is.EqualTo(HttpStatusCode.Forbidden));
    }
}
