using System.Net;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>
/// Stripe resets the billing period when a price changes the interval, so a downgrade to another interval waits for the
/// period end in a subscription schedule: nothing changes or is charged before, and the renewal bills the new price.
/// </summary>
[TestFixture]
public class Downgrading_to_another_billing_interval
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    private static Task<Subscription> StripeAsync(string subscriptionId) => new SubscriptionService(Host.Stripe).GetAsync(subscriptionId);

    private static async Task<List<Invoice>> InvoicesAsync(string subscriptionId) =>
        (await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = subscriptionId, Limit = 100 })).Data;

    private static async Task<(string User, Subscription Before)> ScheduledAsync(string fromPlan, string fromInterval, string toPlan, string toInterval)
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, fromPlan, fromInterval);
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = toPlan, interval = toInterval });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("downgrade"));
        Assert.That(body.GetProperty("effectiveAt").GetDateTimeOffset(),
            Is.EqualTo(new DateTimeOffset(subscription.Items.Data[0].CurrentPeriodEnd, TimeSpan.Zero)));
        return (user, subscription);
    }

    [TestCase("pro", "year", "pro", "month")]
    [TestCase("business", "month", "pro", "year")]
    [TestCase("business", "year", "pro", "month")]
    public async Task Changes_and_charges_nothing_before_the_period_end(string fromPlan, string fromInterval, string toPlan, string toInterval)
    {
        var (_, before) = await ScheduledAsync(fromPlan, fromInterval, toPlan, toInterval);

        var after = await StripeAsync(before.Id);
        Assert.That(after.Items.Data[0].Price.Id, Is.EqualTo(before.Items.Data[0].Price.Id));
        Assert.That(after.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(before.Items.Data[0].CurrentPeriodEnd));
        Assert.That(after.ScheduleId, Is.Not.Null.And.Not.Empty, "the change waits in a subscription schedule");
        Assert.That((await InvoicesAsync(before.Id)).Count, Is.EqualTo(1), "only the first period's invoice");
    }

    [Test]
    public async Task At_the_period_end_the_renewal_bills_the_new_price_for_a_period_of_the_new_interval()
    {
        var (_, before) = await ScheduledAsync("pro", "year", "pro", "month");
        var periodEnd = before.Items.Data[0].CurrentPeriodEnd;

        await Hosts.AdvanceSimulatorAsync(periodEnd);

        var after = await StripeAsync(before.Id);
        var item = after.Items.Data[0];
        Assert.That(item.Price.LookupKey, Is.EqualTo("pro_month"));
        Assert.That(item.CurrentPeriodStart, Is.EqualTo(periodEnd), "the new price starts where the paid year ends");
        Assert.That(item.CurrentPeriodEnd, Is.EqualTo(periodEnd.AddMonths(1)));
        var renewal = (await InvoicesAsync(before.Id)).Single(i => i.BillingReason == "subscription_cycle");
        Assert.That((renewal.AmountPaid, renewal.Status), Is.EqualTo((500L, "paid")));
    }

    [Test]
    public async Task Its_preview_costs_nothing_now_and_takes_effect_at_the_period_end()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "year");

        var (status, body) = await Host.GetAsync(user, "/api/subscriptions/me/change-preview?planId=pro&interval=month");

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That((body.GetProperty("kind").GetString(), body.GetProperty("amountDueNow").GetInt64(), body.GetProperty("nextAmount").GetInt64()),
            Is.EqualTo(("downgrade", 0L, 500L)));
        Assert.That(body.GetProperty("effectiveAt").GetDateTimeOffset(),
            Is.EqualTo(new DateTimeOffset(subscription.Items.Data[0].CurrentPeriodEnd, TimeSpan.Zero)));
    }

    [Test]
    public async Task Asking_for_the_current_price_again_undoes_it_and_the_renewal_keeps_the_old_price()
    {
        var (user, before) = await ScheduledAsync("pro", "year", "pro", "month");

        var (previewStatus, preview) = await Host.GetAsync(user, "/api/subscriptions/me/change-preview?planId=pro&interval=year");
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "year" });

        Assert.That(previewStatus, Is.EqualTo(HttpStatusCode.OK), preview.ToString());
        Assert.That((preview.GetProperty("kind").GetString(), preview.GetProperty("amountDueNow").GetInt64()), Is.EqualTo(("restore", 0L)));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("restore"));
        Assert.That((await StripeAsync(before.Id)).ScheduleId, Is.Null.Or.Empty);

        await Hosts.AdvanceSimulatorAsync(before.Items.Data[0].CurrentPeriodEnd);
        var renewed = (await StripeAsync(before.Id)).Items.Data[0];
        Assert.That(renewed.Price.LookupKey, Is.EqualTo("pro_year"));
        Assert.That(renewed.CurrentPeriodEnd, Is.EqualTo(before.Items.Data[0].CurrentPeriodEnd.AddYears(1)));

        var (again, againBody) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "year" });
        Assert.That(again, Is.EqualTo(HttpStatusCode.Conflict), againBody.ToString());
    }

    [Test]
    public async Task From_a_grandfathered_price_the_catalog_has_since_archived_waits_in_a_schedule_too()
    {
        // The schedule's phase in force names the price the user pays; Stripe refuses an archived one there.
        var (user, before, legacy) = await Host.SubscribeAtArchivedPriceAsync("business", "year", 18000);

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("downgrade"));
        var after = await StripeAsync(before.Id);
        Assert.That(after.Items.Data[0].Price.Id, Is.EqualTo(legacy.Id), "billed until the period end");
        Assert.That(after.ScheduleId, Is.Not.Null.And.Not.Empty, "the change waits in a subscription schedule");
        Assert.That((await new PriceService(Host.Stripe).GetAsync(legacy.Id)).Active, Is.False, "no longer sold");
        await Hosts.AdvanceSimulatorAsync(before.Items.Data[0].CurrentPeriodEnd);
        Assert.That((await StripeAsync(before.Id)).Items.Data[0].Price.LookupKey, Is.EqualTo("business_month"));
    }

    [Test]
    public async Task Another_downgrade_replaces_the_scheduled_one()
    {
        var (user, before) = await ScheduledAsync("business", "year", "business", "month");

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        await Hosts.AdvanceSimulatorAsync(before.Items.Data[0].CurrentPeriodEnd);

        Assert.That((await StripeAsync(before.Id)).Items.Data[0].Price.LookupKey, Is.EqualTo("pro_month"));
    }

    [Test]
    public async Task An_upgrade_replaces_it_and_is_charged_at_once()
    {
        var (user, before) = await ScheduledAsync("pro", "year", "pro", "month");

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "year" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("upgrade"));
        var after = await StripeAsync(before.Id);
        Assert.That((after.Items.Data[0].Price.LookupKey, after.ScheduleId ?? ""), Is.EqualTo(("business_year", "")));
        await Hosts.AdvanceSimulatorAsync(before.Items.Data[0].CurrentPeriodEnd);
        Assert.That((await StripeAsync(before.Id)).Items.Data[0].Price.LookupKey, Is.EqualTo("business_year"), "no downgrade at the renewal");
    }

    [Test]
    public async Task Cancelling_drops_it_and_the_subscription_ends_at_the_period_end()
    {
        var (user, before) = await ScheduledAsync("pro", "year", "pro", "month");

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/cancel");

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var after = await StripeAsync(before.Id);
        Assert.That((after.CancelAtPeriodEnd, after.ScheduleId ?? ""), Is.EqualTo((true, "")));
        await Hosts.AdvanceSimulatorAsync(before.Items.Data[0].CurrentPeriodEnd);
        Assert.That((await StripeAsync(before.Id)).Status, Is.EqualTo("canceled"));
    }

    [Test]
    public async Task Is_refused_while_a_cancellation_is_pending()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "year");
        var (cancelled, cancelBody) = await Host.PostAsync(user, "/api/subscriptions/me/cancel");
        Assert.That(cancelled, Is.EqualTo(HttpStatusCode.OK), cancelBody.ToString());

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("cancellation_pending"));
        Assert.That((await StripeAsync(subscription.Id)).ScheduleId, Is.Null.Or.Empty);
    }

    [Test]
    public async Task A_declined_upgrade_keeps_it()
    {
        var (user, before) = await ScheduledAsync("pro", "year", "pro", "month");
        await Host.SetCardAsync(before.CustomerId, "4000000000000002");

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "year" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired), body.ToString());
        Assert.That((await StripeAsync(before.Id)).ScheduleId, Is.Not.Null.And.Not.Empty, "the downgrade waits again");
        await Host.SetCardAsync(before.CustomerId, "4242424242424242");
        await Hosts.AdvanceSimulatorAsync(before.Items.Data[0].CurrentPeriodEnd);
        Assert.That((await StripeAsync(before.Id)).Items.Data[0].Price.LookupKey, Is.EqualTo("pro_month"), "monthly from the year's end, as asked");
    }

    [Test]
    public async Task A_declined_upgrade_keeps_it_also_when_a_push_has_since_replaced_its_price()
    {
        // Pro yearly → Pro monthly waits in a schedule; then a catalog push replaces pro_month (archiving the price the
        // schedule names). The upgrade releases the schedule and is declined: the downgrade comes back, at the agreed price.
        var (user, before) = await ScheduledAsync("pro", "year", "pro", "month");
        var prices = new PriceService(Host.Stripe);
        var agreed = (await prices.ListAsync(new PriceListOptions { LookupKeys = ["pro_month"], Active = true })).Data.Single();
        await ReplaceAsync(agreed);
        try
        {
            await Host.SetCardAsync(before.CustomerId, "4000000000000002");

            var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "year" });

            Assert.That(status, Is.EqualTo(HttpStatusCode.PaymentRequired), body.ToString());
            Assert.That((await StripeAsync(before.Id)).ScheduleId, Is.Not.Null.And.Not.Empty, "the downgrade waits again");
            Assert.That((await prices.GetAsync(agreed.Id)).Active, Is.False, "no longer sold");
            await Host.SetCardAsync(before.CustomerId, "4242424242424242");
            await Hosts.AdvanceSimulatorAsync(before.Items.Data[0].CurrentPeriodEnd);
            Assert.That((await StripeAsync(before.Id)).Items.Data[0].Price.Id, Is.EqualTo(agreed.Id), "monthly from the year's end, as agreed");
        }
        finally
        {
            Host.Clock.Advance(TimeSpan.FromSeconds(31)); // Billing's 30-s price cache forgets the replaced price before the next test
        }
    }

    /// <summary>What a catalog push does to a price whose amount it changes (here: the same amount again, so the catalog the
    /// other tests see stays as it was): a new price takes the lookup key over, the old one is archived.</summary>
    internal static async Task ReplaceAsync(global::Stripe.Price old)
    {
        var prices = new PriceService(Host.Stripe);
        await prices.CreateAsync(new PriceCreateOptions
        {
            Product = old.ProductId, UnitAmount = old.UnitAmount, Currency = old.Currency, LookupKey = old.LookupKey, TransferLookupKey = true,
            Recurring = new PriceRecurringOptions { Interval = old.Recurring.Interval, IntervalCount = old.Recurring.IntervalCount },
            Metadata = old.Metadata,
        });
        await prices.UpdateAsync(old.Id, new PriceUpdateOptions { Active = false });
    }

    [Test]
    public async Task A_resume_with_nothing_to_resume_keeps_it()
    {
        var (user, before) = await ScheduledAsync("pro", "year", "pro", "month");

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/resume");

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That((await StripeAsync(before.Id)).ScheduleId, Is.Not.Null.And.Not.Empty);
    }

    [Test]
    public async Task A_double_click_schedules_it_once()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "year");

        var answers = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ =>
            Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" })));

        Assert.That(answers.Select(a => a.Status), Is.All.EqualTo(HttpStatusCode.OK), string.Join(" | ", answers.Select(a => a.Body.ToString())));
        var schedules = await new SubscriptionScheduleService(Host.Stripe).ListAsync(new SubscriptionScheduleListOptions { Customer = subscription.CustomerId });
        Assert.That(schedules.Data, Has.Count.EqualTo(1));
        await Hosts.AdvanceSimulatorAsync(subscription.Items.Data[0].CurrentPeriodEnd);
        Assert.That((await StripeAsync(subscription.Id)).Items.Data[0].Price.LookupKey, Is.EqualTo("pro_month"));
    }

    [Test]
    public async Task A_trial_goes_on_and_its_end_bills_the_new_price()
    {
        var user = SubscriptionsHost.NewUser();
        var (started, checkout) = await Host.PostAsync(user, "/api/subscriptions/checkout", new { planId = "pro", interval = "year" });
        Assert.That(started, Is.EqualTo(HttpStatusCode.OK), checkout.ToString());
        var sessionId = checkout.GetProperty("checkoutSessionId").GetString()!;
        using (var paid = await Host.PayAsync(sessionId))
        {
            Assert.That((int)paid.StatusCode, Is.EqualTo(303), await paid.Content.ReadAsStringAsync());
        }
        var session = await new global::Stripe.Checkout.SessionService(Host.Stripe).GetAsync(sessionId);
        var trialing = await StripeAsync(session.SubscriptionId);
        Assert.That(trialing.Status, Is.EqualTo("trialing"));
        await SubscriptionsHost.SaveLocalAsync(user, "pro", trialing, sequence: 1);

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var after = await StripeAsync(trialing.Id);
        Assert.That((after.Status, after.TrialEnd, after.Items.Data[0].Price.LookupKey), Is.EqualTo(("trialing", trialing.TrialEnd, "pro_year")));
        await Hosts.AdvanceSimulatorAsync(trialing.TrialEnd!.Value);
        var billed = await StripeAsync(trialing.Id);
        Assert.That((billed.Status, billed.Items.Data[0].Price.LookupKey), Is.EqualTo(("active", "pro_month")));
        var first = (await InvoicesAsync(trialing.Id)).Where(i => i.AmountPaid > 0).ToList();
        Assert.That(first.Select(i => i.AmountPaid), Is.EqualTo(new[] { 500L }), "the first charge is a month of the new price");
    }

    [Test]
    public async Task Waits_for_another_change_of_the_same_user_and_answers_409_when_it_takes_too_long()
    {
        var user = SubscriptionsHost.NewUser();
        await Host.SubscribeAsync(user, "pro", "year");
        await using (var other = new Npgsql.NpgsqlConnection(SubscriptionsHost.ConnectionString))
        {
            // Another replica's change of this user, holding the lock.
            await other.OpenAsync();
            await using var tx = await other.BeginTransactionAsync();
            await using var command = new Npgsql.NpgsqlCommand("SELECT pg_advisory_xact_lock(hashtextextended(@key, 0))", other, tx);
            command.Parameters.AddWithValue("key", "subscription-changes:" + user);
            await command.ExecuteNonQueryAsync();

            var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });

            Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
            Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("change_in_progress"));
        }

        var (after, afterBody) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });
        Assert.That(after, Is.EqualTo(HttpStatusCode.OK), afterBody.ToString());
    }

    [Test]
    public async Task A_subscription_a_schedule_ends_is_not_changed_and_a_cancel_adds_nothing()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "year");
        var schedules = new SubscriptionScheduleService(Host.Stripe);
        var schedule = await schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = subscription.Id });
        await schedules.UpdateAsync(schedule.Id, new SubscriptionScheduleUpdateOptions
        {
            EndBehavior = "cancel", // ends with the year (made in the Dashboard, say)
            Phases =
            [
                new SubscriptionSchedulePhaseOptions
                {
                    Items = [new SubscriptionSchedulePhaseItemOptions { Price = subscription.Items.Data[0].Price.Id, Quantity = 1 }],
                    StartDate = schedule.Phases[0].StartDate, EndDate = schedule.Phases[0].EndDate,
                },
            ],
        });

        var (changed, changeBody) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "year" });
        var (cancelled, cancelBody) = await Host.PostAsync(user, "/api/subscriptions/me/cancel");

        Assert.That(changed, Is.EqualTo(HttpStatusCode.Conflict), changeBody.ToString());
        Assert.That(changeBody.GetProperty("code").GetString(), Is.EqualTo("cancellation_pending"));
        Assert.That(cancelled, Is.EqualTo(HttpStatusCode.OK), cancelBody.ToString());
        Assert.That((await schedules.GetAsync(schedule.Id)).Status, Is.EqualTo("active"), "the schedule that ends it stays");
        await Hosts.AdvanceSimulatorAsync(subscription.Items.Data[0].CurrentPeriodEnd);
        Assert.That((await StripeAsync(subscription.Id)).Status, Is.EqualTo("canceled"));
    }

    [Test]
    public async Task A_downgrade_that_keeps_the_interval_still_waits_for_the_period_end_without_a_schedule()
    {
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "business", "month");

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "pro", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("downgrade"));
        var after = await StripeAsync(subscription.Id);
        Assert.That(after.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(subscription.Items.Data[0].CurrentPeriodEnd));
        Assert.That(after.Metadata["entitledPlanId"], Is.EqualTo("business"));
        Assert.That(after.ScheduleId, Is.Null.Or.Empty);
    }
    [Test]
    public async Task A_change_before_Billing_has_heard_of_the_renewal_that_applied_a_scheduled_downgrade_is_refused_not_misread()
    {
        // Max, downgraded to Pro at the renewal. Stripe renews on Pro; its events have
        // not reached Billing, which still shows Max. Business now is an upgrade from Pro: read as a downgrade from Max, it
        // would entitle the user to Max for the new period at Pro's price and charge nothing.
        var (user, before) = await ScheduledAsync("max", "month", "pro", "month");
        await Hosts.AdvanceSimulatorAsync(before.Items.Data[0].CurrentPeriodEnd);
        var renewed = await StripeAsync(before.Id);
        Assert.That(renewed.Items.Data[0].Price.LookupKey, Is.EqualTo("pro_month"));

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("subscription_changing"));
        var after = await StripeAsync(before.Id);
        Assert.That(after.Items.Data[0].Price.LookupKey, Is.EqualTo("pro_month"), "nothing changed");
        Assert.That(after.Metadata, Is.EquivalentTo(renewed.Metadata), "no entitlement to the old plan for the new period");
        var (_, preview) = await Host.GetAsync(user, "/api/subscriptions/me/change-preview?planId=business&interval=month");
        Assert.That(preview.GetProperty("code").GetString(), Is.EqualTo("subscription_changing"), preview.ToString());
    }
}

/// <summary>While a renewal is unpaid, an upgrade waits for the payment: its proration, paid, would end the grace period.</summary>
[TestFixture]
public class Upgrading_while_past_due
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    [Test]
    public async Task Is_refused_until_the_open_invoice_is_paid_and_charges_nothing()
    {
        var user = SubscriptionsHost.NewUser();
        // 4000 0000 0000 0341 pays at checkout and fails every later charge.
        var subscription = await Host.SubscribeAsync(user, "pro", "month", card: "4000000000000341");
        await Hosts.AdvanceSimulatorAsync(subscription.Items.Data[0].CurrentPeriodEnd.AddHours(1));
        var pastDue = await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id);
        Assert.That(pastDue.Status, Is.EqualTo("past_due"));
        await SubscriptionsHost.SaveLocalAsync(user, "pro", pastDue, sequence: 2); // as Payments' event leaves it
        await Host.SetCardAsync(subscription.CustomerId, "4242424242424242"); // a card that would pay the proration

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("payment_past_due"));
        var invoices = (await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = subscription.Id })).Data;
        Assert.That(invoices.Where(i => i.BillingReason == "subscription_update"), Is.Empty, "no proration was charged");
    }

    [Test]
    public async Task Is_refused_while_the_subscription_is_paused_and_charges_nothing()
    {
        // Stripe pauses a subscription whose trial ended without a card, or (when so configured) whose renewal failed; it
        // then neither renews nor invoices. An upgrade's proration would be charged as if nothing were owed.
        var user = SubscriptionsHost.NewUser();
        var subscription = await Host.SubscribeAsync(user, "pro", "month");
        var paused = await new SubscriptionService(Host.Stripe).PauseAsync(subscription.Id, new SubscriptionPauseOptions { Type = "subscription" });
        await SubscriptionsHost.SaveLocalAsync(user, "pro", paused, sequence: 2); // as Payments' event leaves it

        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "business", interval = "month" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Conflict), body.ToString());
        Assert.That(body.GetProperty("code").GetString(), Is.EqualTo("payment_past_due"));
        var after = await new SubscriptionService(Host.Stripe).GetAsync(subscription.Id);
        Assert.That((after.Status, after.Items.Data[0].Price.LookupKey), Is.EqualTo(("paused", "pro_month")), "nothing changed");
        var invoices = (await new InvoiceService(Host.Stripe).ListAsync(new InvoiceListOptions { Subscription = subscription.Id })).Data;
        Assert.That(invoices.Where(i => i.BillingReason == "subscription_update"), Is.Empty, "no proration was charged");
    }
}
