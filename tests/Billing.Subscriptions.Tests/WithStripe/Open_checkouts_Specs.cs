using System.Net;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>One open subscription checkout per user: two tabs cannot end in two subscriptions.</summary>
[TestFixture]
public class Opening_a_second_checkout
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    private static async Task<string> CheckoutAsync(string user, string planId, string interval)
    {
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/checkout", new { planId, interval });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        return body.GetProperty("checkoutSessionId").GetString()!;
    }

    private static async Task<string> StatusOfAsync(string sessionId) =>
        (await new global::Stripe.Checkout.SessionService(Host.Stripe).GetAsync(sessionId)).Status;

    [Test]
    public async Task For_another_price_expires_the_first_so_it_cannot_be_paid()
    {
        var user = SubscriptionsHost.NewUser();
        var monthly = await CheckoutAsync(user, "business", "month");
        var yearly = await CheckoutAsync(user, "business", "year");

        Assert.That((await StatusOfAsync(monthly), await StatusOfAsync(yearly)), Is.EqualTo(("expired", "open")));
        using var paid = await Host.PayAsync(monthly);
        Assert.That((int)paid.StatusCode, Is.Not.EqualTo(303), "the expired session takes no payment");
        var subscriptions = await new SubscriptionService(Host.Stripe).ListAsync(new SubscriptionListOptions { Customer = await Host.CustomerAsync(user), Status = "all" });
        Assert.That(subscriptions.Data, Is.Empty);
    }

    [Test]
    public async Task Right_after_a_push_replaced_the_price_the_next_attempt_works_at_once()
    {
        // Billing caches a lookup key's price for 30 s, and the push archived the cached one: Stripe refuses it. That refusal
        // makes Billing look prices up again, so the user's next attempt gets the new price, not the same refusal for 30 s.
        await CheckoutAsync(SubscriptionsHost.NewUser(), "pro", "month"); // pro_month's price is cached now
        var old = (await new PriceService(Host.Stripe).ListAsync(new PriceListOptions { LookupKeys = ["pro_month"], Active = true })).Data.Single();
        await Downgrading_to_another_billing_interval.ReplaceAsync(old);
        try
        {
            var user = SubscriptionsHost.NewUser();
            var (refused, body) = await Host.PostAsync(user, "/api/subscriptions/checkout", new { planId = "pro", interval = "month" });
            Assert.That(refused, Is.EqualTo(HttpStatusCode.BadGateway), body.ToString());

            var sessionId = await CheckoutAsync(user, "pro", "month");

            var lines = await new global::Stripe.Checkout.SessionLineItemService(Host.Stripe).ListAsync(sessionId);
            Assert.That(lines.Data.Single().Price.Id, Is.Not.EqualTo(old.Id), "the price that took pro_month over");
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromSeconds(31)); // as the cache would, should the fix fail
        }
    }

    [Test]
    public async Task A_double_click_gets_the_same_open_session()
    {
        var user = SubscriptionsHost.NewUser();
        var first = await CheckoutAsync(user, "business", "month");
        var second = await CheckoutAsync(user, "business", "month");

        Assert.That(second, Is.EqualTo(first));
        Assert.That(await StatusOfAsync(first), Is.EqualTo("open"));
    }

    [Test]
    public async Task A_double_click_gets_the_same_session_also_across_the_end_of_a_ten_minute_span()
    {
        var user = SubscriptionsHost.NewUser();
        var toBoundary = TimeSpan.FromSeconds(600 - Host.Clock.GetUtcNow().ToUnixTimeSeconds() % 600) - TimeSpan.FromMilliseconds(500);
        Host.Clock.Advance(toBoundary);
        try
        {
            var first = await CheckoutAsync(user, "business", "month");
            Host.Clock.Advance(TimeSpan.FromSeconds(1)); // past xx:x0:00
            var second = await CheckoutAsync(user, "business", "month");

            Assert.That(second, Is.EqualTo(first));
            Assert.That(await StatusOfAsync(first), Is.EqualTo("open"));
        }
        finally
        {
            Host.Clock.Advance(-toBoundary - TimeSpan.FromSeconds(1));
        }
    }

    [Test]
    public async Task An_open_session_older_than_ten_minutes_is_expired_and_replaced_so_the_two_cannot_both_be_paid()
    {
        var user = SubscriptionsHost.NewUser();
        var first = await CheckoutAsync(user, "business", "month");
        Host.Clock.Advance(TimeSpan.FromMinutes(11));
        try
        {
            var again = await CheckoutAsync(user, "business", "month");

            Assert.That(again, Is.Not.EqualTo(first));
            Assert.That((await StatusOfAsync(first), await StatusOfAsync(again)), Is.EqualTo(("expired", "open")));
            Assert.That(await CheckoutAsync(user, "business", "month"), Is.EqualTo(again), "and a double click on the new one gets it back");
        }
        finally
        {
            Host.Clock.Advance(-TimeSpan.FromMinutes(11));
        }
    }

    [Test]
    public async Task One_Stripe_refused_is_made_once_the_cause_is_mended_instead_of_Stripe_replaying_the_refusal()
    {
        await CheckoutAsync(SubscriptionsHost.NewUser(), "business", "month"); // the service knows the price's id now
        var prices = new PriceService(Host.Stripe);
        var price = (await prices.ListAsync(new PriceListOptions { LookupKeys = ["business_month"], Active = true })).Data.Single();
        var user = SubscriptionsHost.NewUser();
        await prices.UpdateAsync(price.Id, new PriceUpdateOptions { Active = false });
        try
        {
            var (status, body) = await Host.PostAsync(user, "/api/subscriptions/checkout", new { planId = "business", interval = "month" });
            Assert.That((status, body.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.BadGateway, "stripe_error")), body.ToString());
        }
        finally
        {
            await prices.UpdateAsync(price.Id, new PriceUpdateOptions { Active = true });
        }

        var session = await CheckoutAsync(user, "business", "month");
        Assert.That(await StatusOfAsync(session), Is.EqualTo("open"));
    }

    [Test]
    public async Task A_session_expired_behind_Billing_s_back_is_not_handed_out_again()
    {
        var user = SubscriptionsHost.NewUser();
        var first = await CheckoutAsync(user, "business", "month");
        // Expired by a checkout for another price that then failed before it recorded anything (or by hand in Stripe).
        await new global::Stripe.Checkout.SessionService(Host.Stripe).ExpireAsync(first);

        var again = await CheckoutAsync(user, "business", "month");

        Assert.That(again, Is.Not.EqualTo(first));
        Assert.That(await StatusOfAsync(again), Is.EqualTo("open"));
    }

    [Test]
    public async Task Back_to_the_first_price_gets_a_new_open_session()
    {
        var user = SubscriptionsHost.NewUser();
        var monthly = await CheckoutAsync(user, "business", "month");
        await CheckoutAsync(user, "business", "year");
        var monthlyAgain = await CheckoutAsync(user, "business", "month");

        Assert.That(monthlyAgain, Is.Not.EqualTo(monthly));
        Assert.That(await StatusOfAsync(monthlyAgain), Is.EqualTo("open"));
    }

    [Test]
    public async Task After_the_first_was_paid_is_refused_before_Billing_has_heard_of_the_subscription()
    {
        var user = SubscriptionsHost.NewUser();
        var monthly = await CheckoutAsync(user, "business", "month");
        using var paid = await Host.PayAsync(monthly);
        Assert.That((int)paid.StatusCode, Is.EqualTo(303));

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/checkout", new { planId = "business", interval = "year" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("already_subscribed"));
    }

    [Test]
    public async Task While_the_first_one_s_bank_debit_is_still_processing_is_refused()
    {
        // Paid by bank debit: the session is complete, its subscription incomplete until the debit settles (days), and
        // Billing has heard of nothing. A second checkout paid by card would leave two subscriptions, both renewing.
        var user = SubscriptionsHost.NewUser();
        var monthly = await CheckoutAsync(user, "business", "month");
        using var paid = await Host.PayAsync(monthly, method: "bank_debit");
        Assert.That((int)paid.StatusCode, Is.EqualTo(303), await paid.Content.ReadAsStringAsync());
        var session = await new global::Stripe.Checkout.SessionService(Host.Stripe).GetAsync(monthly);
        Assert.That((session.Status, session.PaymentStatus), Is.EqualTo(("complete", "unpaid")));

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/checkout", new { planId = "business", interval = "year" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("payment_processing"));
        Assert.That(body.GetProperty("subscriptionId").GetString(), Is.EqualTo(session.SubscriptionId));
    }

    [Test]
    public async Task A_burst_of_one_users_stuck_checkouts_does_not_keep_another_user_from_checking_out()
    {
        // One user's checkout holds its lock (Stripe slow: here the test holds the user's checkout row) while twenty more
        // of theirs arrive; another user's checkout must not wait for connections they hold.
        var user = SubscriptionsHost.NewUser();
        await CheckoutAsync(user, "business", "month"); // the row exists
        static int StripeOf(string u) => (int)((uint)StringComparer.Ordinal.GetHashCode(u) % 64);
        var other = SubscriptionsHost.NewUser();
        while (StripeOf(other) != StripeOf(user)) // one that a queue striped 64 ways would have made wait behind the first
        {
            other = SubscriptionsHost.NewUser();
        }
        await using var blocker = new Npgsql.NpgsqlConnection(SubscriptionsHost.ConnectionString);
        await blocker.OpenAsync();
        await using var tx = await blocker.BeginTransactionAsync();
        await using (var lockRow = new Npgsql.NpgsqlCommand("SELECT 1 FROM subscription_checkouts WHERE user_id = @user FOR UPDATE", blocker, tx))
        {
            lockRow.Parameters.AddWithValue("user", user);
            await lockRow.ExecuteNonQueryAsync();
        }
        var burst = Enumerable.Range(0, 20).Select(i => Host.PostAsync(user, "/api/subscriptions/checkout",
            new { planId = "business", interval = i % 2 == 0 ? "month" : "year" })).ToList();
        await Task.Delay(500);

        var started = System.Diagnostics.Stopwatch.StartNew();
        var (status, body) = await Host.PostAsync(other, "/api/subscriptions/checkout", new { planId = "business", interval = "month" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(started.Elapsed, Is.LessThan(TimeSpan.FromSeconds(4)), "not queued behind the other user's checkouts");

        await tx.RollbackAsync();
        var answers = await Task.WhenAll(burst);
        Assert.That(answers.Select(a => a.Status), Is.All.AnyOf(HttpStatusCode.OK, HttpStatusCode.Conflict));
        Assert.That(answers.Where(a => a.Status == HttpStatusCode.Conflict).Select(a => a.Body.GetProperty("code").GetString()),
            Is.All.EqualTo("checkout_in_progress"));
    }

    [Test]
    public async Task Concurrent_checkouts_for_two_prices_leave_one_session_open()
    {
        var user = SubscriptionsHost.NewUser();
        var answers = await Task.WhenAll(Enumerable.Range(0, 6).Select(i =>
            Host.PostAsync(user, "/api/subscriptions/checkout", new { planId = "business", interval = i % 2 == 0 ? "month" : "year" })));

        Assert.That(answers.Select(a => a.Status), Is.All.EqualTo(HttpStatusCode.OK));
        var statuses = new List<string>();
        foreach (var id in answers.Select(a => a.Body.GetProperty("checkoutSessionId").GetString()!).Distinct())
        {
            statuses.Add(await StatusOfAsync(id));
        }
        Assert.That(statuses.Count(s => s == "open"), Is.EqualTo(1));
    }
}
