using System.Net;
using Billing.ServiceDefaults.Stripe;
using Npgsql;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>A downgrade waits for the period end; until then, asking for the plan the user still has undoes it.</summary>
[TestFixture]
public class Undoing_a_scheduled_downgrade
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    /// <summary>Business monthly, downgraded to Pro monthly at the period end, stored as Payments' event would leave it.</summary>
    private static async Task<(string User, Subscription Before)> DowngradedAsync()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "business", "month");
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var downgraded = await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id);
        Assert.That(downgraded.Items.Data[0].Price.LookupKey, Is.EqualTo("pro_month"));
        // Payments publishes the entitled plan (business) with Stripe's price (pro) until the period end.
        await SubscriptionsHost.SaveLocalAsync(user, "business", downgraded, sequence: 2);
        return (user, subscription);
    }

    [Test]
    public async Task Restores_the_plan_s_price_without_charging_and_drops_the_pending_downgrade()
    {
        var (user, before) = await DowngradedAsync();

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("restore"));
        var after = await new SubscriptionService(Host.Stripe).GetAsync(before.Id);
        Assert.That(after.Items.Data[0].Price.LookupKey, Is.EqualTo("business_month"));
        Assert.That(after.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(before.Items.Data[0].CurrentPeriodEnd));
        Assert.That(after.Metadata.GetValueOrDefault("entitledPlanId", ""), Is.Empty);
        var invoices = await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = before.Id, Limit = 100 });
        Assert.That(invoices.Data.Count(i => i.BillingReason == "subscription_update"), Is.Zero, "nothing charged");
    }

    [Test]
    public async Task An_upgrade_meanwhile_is_prorated_against_the_plan_paid_for_not_the_lower_one_stripe_bills_next()
    {
        // Business was paid for this period; Stripe's item already says Pro (the downgrade waits for the renewal). An upgrade
        // to Max now credits the unused Business time: about 5000 - 2000, not 5000 - 500.
        var (user, before) = await DowngradedAsync();

        var (_, preview) = await Host.GetAsync(user, "/api/subscriptions/me/change-preview?planId=max&interval=month");
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "max", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("upgrade"));
        var invoices = await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = before.Id, Limit = 100 });
        var upgrade = invoices.Data.Single(i => i.BillingReason == "subscription_update");
        Assert.That(upgrade.AmountPaid, Is.EqualTo(3000).Within(10));
        Assert.That(preview.GetProperty("amountDueNow").GetInt64(), Is.EqualTo(upgrade.AmountPaid).Within(10), preview.ToString());
        var after = await new SubscriptionService(Host.Stripe).GetAsync(before.Id);
        Assert.That(after.PlanItem().Price.LookupKey, Is.EqualTo("max_month"));
        Assert.That(after.Metadata.GetValueOrDefault("entitledPlanId", ""), Is.Empty, "no downgrade pending any more");
    }

    [Test]
    public async Task A_declined_upgrade_meanwhile_leaves_the_downgrade_pending()
    {
        var (user, before) = await DowngradedAsync();
        await Host.SetCardAsync(before.CustomerId, "4000000000000002");

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "max", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired), body.ToString());
        var after = await new SubscriptionService(Host.Stripe).GetAsync(before.Id);
        Assert.That(after.PlanItem().Price.LookupKey, Is.EqualTo("pro_month"), "Stripe bills Pro from the renewal, as asked");
        Assert.That((after.Metadata.GetValueOrDefault("entitledPlanId"), after.Metadata.GetValueOrDefault("planId")), Is.EqualTo(("business", "pro")));
        var invoices = await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = before.Id, Limit = 100 });
        Assert.That(invoices.Data.Where(i => i.BillingReason == "subscription_update").Sum(i => i.AmountPaid), Is.Zero, "nothing charged");
    }

    [Test]
    public async Task After_a_switch_in_the_customer_portal_asking_for_the_plan_paid_for_restores_nothing()
    {
        // The portal (or the Dashboard) moved the item from the lower price to Max, charging its proration; Payments' events
        // of it have not reached Billing yet, whose record still shows Business. Putting Business back without proration
        // would take the Max the user has just paid for.
        var (user, before) = await DowngradedAsync();
        var max = (await new PriceService(Host.Stripe).ListAsync(new PriceListOptions { LookupKeys = ["max_month"], Active = true })).Data.Single();
        await new SubscriptionService(Host.Stripe).UpdateAsync(before.Id, new SubscriptionUpdateOptions
        {
            Items = [new SubscriptionItemOptions { Id = before.PlanItem().Id, Price = max.Id }],
            ProrationBehavior = "always_invoice",
        });

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("subscription_changing"));
        var after = await new SubscriptionService(Host.Stripe).GetAsync(before.Id);
        Assert.That(after.PlanItem().Price.LookupKey, Is.EqualTo("max_month"), "the plan switched to and paid for stays");
    }

    [Test]
    public async Task Its_preview_costs_nothing_now()
    {
        var (user, _) = await DowngradedAsync();

        var (status, body) = await Host.GetAsync(user, "/api/subscriptions/me/change-preview?planId=business&interval=month");

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That((body.GetProperty("kind").GetString(), body.GetProperty("amountDueNow").GetInt64()), Is.EqualTo(("restore", 0L)));
    }

    [Test]
    public async Task Asking_for_the_lower_plan_again_is_no_change()
    {
        var (user, _) = await DowngradedAsync();

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("no_change"));
    }

    [Test]
    public async Task Restores_the_grandfathered_price_the_user_paid_not_the_catalog_s_current_one()
    {
        // Subscribed to Business at an older price (1,800) the catalog has since replaced (2,000 today): undoing a downgrade
        // puts that price back, not the catalog's, which would cost 200 more at every renewal.
        var legacy = await new PriceService(Host.Stripe).CreateAsync(new PriceCreateOptions
        {
            Product = "billing_plan_business", UnitAmount = 1800, Currency = "usd",
            Recurring = new PriceRecurringOptions { Interval = "month" }, Metadata = new() { ["planId"] = "business" },
        });
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "business", "month", priceId: legacy.Id);
        var (downgraded, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });
        Assert.That(downgraded, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        await SubscriptionsHost.SaveLocalAsync(user, "business", await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id), sequence: 2);

        var (status, restored) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), restored.ToString());
        Assert.That(restored.GetProperty("kind").GetString(), Is.EqualTo("restore"));
        var after = await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id);
        Assert.That(after.Items.Data[0].Price.Id, Is.EqualTo(legacy.Id), "the price the user pays stays theirs");
    }

    /// <summary>Business monthly at a grandfathered 1,800 a later catalog push archived, downgraded to Pro within the month.</summary>
    private static async Task<(string User, Subscription Before, global::Stripe.Price Legacy)> DowngradedFromAnArchivedPriceAsync()
    {
        var (user, subscription, legacy) = await Host.SubscribeAtArchivedPriceAsync("business", "month", 1800);
        var (downgraded, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });
        Assert.That(downgraded, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        await SubscriptionsHost.SaveLocalAsync(user, "business", await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id), sequence: 2);
        return (user, subscription, legacy);
    }

    [Test]
    public async Task Restores_a_grandfathered_price_the_catalog_has_since_archived_which_stays_archived()
    {
        // Stripe refuses an archived price on an item: the price is active for the one call only.
        var (user, before, legacy) = await DowngradedFromAnArchivedPriceAsync();

        var (status, restored) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), restored.ToString());
        Assert.That(restored.GetProperty("kind").GetString(), Is.EqualTo("restore"));
        var after = await new SubscriptionService(Host.Stripe).GetAsync(before.Id);
        Assert.That(after.PlanItem().Price.Id, Is.EqualTo(legacy.Id), "the price the user pays stays theirs");
        Assert.That((await new PriceService(Host.Stripe).GetAsync(legacy.Id)).Active, Is.False, "no longer sold");
    }

    [Test]
    public async Task Restoring_an_archived_price_while_another_such_change_holds_its_lock_answers_503_and_changes_nothing()
    {
        var (user, before, legacy) = await DowngradedFromAnArchivedPriceAsync();
        await using var other = new NpgsqlConnection(SubscriptionsHost.ConnectionString);
        await other.OpenAsync();
        await using (var hold = new NpgsqlCommand("SELECT pg_advisory_lock(hashtextextended('retired-prices', 0))", other))
        {
            await hold.ExecuteNonQueryAsync(); // another replica making an archived price active for its call
        }

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That((status, body.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.ServiceUnavailable, "stripe_unavailable")), body.ToString());
        var after = await new SubscriptionService(Host.Stripe).GetAsync(before.Id);
        Assert.That(after.PlanItem().Price.LookupKey, Is.EqualTo("pro_month"), "the downgrade still pending");
        Assert.That((await new PriceService(Host.Stripe).GetAsync(legacy.Id)).Active, Is.False);
    }

    [Test]
    public async Task An_upgrade_meanwhile_from_a_grandfathered_archived_price_credits_what_was_paid()
    {
        var (user, before, legacy) = await DowngradedFromAnArchivedPriceAsync();

        var (previewed, preview) = await Host.GetAsync(user, "/api/subscriptions/me/change-preview?planId=max&interval=month");
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "max", interval = "month" });

        Assert.That(previewed, Is.EqualTo(HttpStatusCode.OK), preview.ToString());
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var invoices = await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = before.Id, Limit = 100 });
        var upgrade = invoices.Data.Single(i => i.BillingReason == "subscription_update");
        Assert.That(upgrade.AmountPaid, Is.EqualTo(5000 - 1800).Within(10), "the unused 1,800 credited, not the lower price's 500");
        Assert.That(preview.GetProperty("amountDueNow").GetInt64(), Is.EqualTo(upgrade.AmountPaid).Within(10), preview.ToString());
        Assert.That((await new SubscriptionService(Host.Stripe).GetAsync(before.Id)).PlanItem().Price.LookupKey, Is.EqualTo("max_month"));
        Assert.That((await new PriceService(Host.Stripe).GetAsync(legacy.Id)).Active, Is.False, "no longer sold");
    }

    [Test]
    public async Task A_catalog_price_a_push_has_just_replaced_is_never_made_active_again()
    {
        // Billing caches the price of a lookup key for 30 s: a change right after a push can name the price the push has
        // just archived. Stripe refuses it, and that stands — only prices a subscription pays or paid are made active again.
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "business", "month");
        var (previewed, preview) = await Host.GetAsync(user, "/api/subscriptions/me/change-preview?planId=pro&interval=month");
        Assert.That(previewed, Is.EqualTo(HttpStatusCode.OK), preview.ToString()); // pro_month's price is cached now
        var prices = new PriceService(Host.Stripe);
        var old = (await prices.ListAsync(new PriceListOptions { LookupKeys = ["pro_month"], Active = true })).Data.Single();
        await Downgrading_to_another_billing_interval.ReplaceAsync(old);
        try
        {
            var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });

            Assert.That((status, body.GetProperty("code").GetString()), Is.EqualTo((HttpStatusCode.BadGateway, "stripe_error")), body.ToString());
            Assert.That((await prices.GetAsync(old.Id)).Active, Is.False, "the replaced price is not sold again");
            Assert.That((await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id)).PlanItem().Price.LookupKey, Is.EqualTo("business_month"));
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromSeconds(31)); // the cache forgets the replaced price before the next test
        }
    }

    [Test]
    public async Task After_the_renewal_at_the_lower_price_asking_for_the_old_plan_is_no_restore()
    {
        var (user, before) = await DowngradedAsync();
        // Stripe renews at the lower price; its events have not reached Billing yet, which still shows the entitled plan.
        await Hosts.AdvanceSimulatorAsync(before.Items.Data[0].CurrentPeriodEnd);

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        var after = await new SubscriptionService(Host.Stripe).GetAsync(before.Id);
        Assert.That(after.Items.Data[0].Price.LookupKey, Is.EqualTo("pro_month"), "not a whole period of the higher plan at the lower price");
    }
}
