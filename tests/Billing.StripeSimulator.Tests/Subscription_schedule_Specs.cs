using System.Net;
using System.Text.Json.Nodes;
using Stripe;

namespace Billing.StripeSimulator.Tests;

/// <summary>
/// Subscription schedules the way Billing uses them: a downgrade that changes the billing interval takes effect at the
/// end of the current period (a schedule created from the subscription, with a second phase), released to undo it.
/// </summary>
public sealed class Scheduling_a_change_at_period_end : SimulatorSpec
{
    private static SubscriptionScheduleService Schedules => new(Stripe);
    private static SubscriptionService Subscriptions => new(Stripe);

    private static long Unix(DateTime at) => new DateTimeOffset(at).ToUnixTimeSeconds();

    private static async Task<List<JsonObject>> Events()
    {
        var list = await GetJson("/_sim/events");
        return list["data"]!.AsArray().Select(e => e!["event"]!.AsObject()).Reverse().ToList();
    }

    private static string Type(JsonObject evt) => evt["type"]!.GetValue<string>();

    /// <summary>What Billing does: a schedule from the subscription, then its current phase and the new price's phase.</summary>
    private static async Task<SubscriptionSchedule> ScheduleChange(Subscription sub, Price to, SubscriptionSchedulePhaseDurationOptions? duration = null, string endBehavior = "release")
    {
        var schedule = await Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = sub.Id }, new RequestOptions { IdempotencyKey = "schedule-" + sub.Id });
        return await Schedules.UpdateAsync(schedule.Id, new SubscriptionScheduleUpdateOptions
        {
            EndBehavior = endBehavior,
            ProrationBehavior = "none",
            Phases =
            [
                new SubscriptionSchedulePhaseOptions
                {
                    Items = [new SubscriptionSchedulePhaseItemOptions { Price = sub.Items.Data[0].Price.Id, Quantity = 1 }],
                    StartDate = schedule.Phases[0].StartDate,
                    EndDate = schedule.Phases[0].EndDate,
                },
                new SubscriptionSchedulePhaseOptions
                {
                    Items = [new SubscriptionSchedulePhaseItemOptions { Price = to.Id, Quantity = 1 }],
                    Duration = duration,
                    Metadata = new() { ["planId"] = "basic" },
                },
            ],
        });
    }

    [Test]
    public async Task Should_create_a_schedule_whose_one_phase_is_the_current_period()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var sub = await SubscribeAndPay(yearly);
        var item = sub.Items.Data[0];
        var eventsBefore = (await Events()).Count;

        var schedule = await Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = sub.Id }, new RequestOptions { IdempotencyKey = "downgrade-1" });

        Assert.That(schedule.Id, Does.StartWith("sub_sched_"));
        Assert.That(schedule.Status, Is.EqualTo("active"));
        Assert.That(schedule.EndBehavior, Is.EqualTo("release"));
        Assert.That(schedule.SubscriptionId, Is.EqualTo(sub.Id));
        Assert.That(schedule.CustomerId, Is.EqualTo(sub.CustomerId));
        Assert.That(schedule.Phases, Has.Count.EqualTo(1));
        Assert.That(schedule.Phases[0].StartDate, Is.EqualTo(item.CurrentPeriodStart));
        Assert.That(schedule.Phases[0].EndDate, Is.EqualTo(item.CurrentPeriodEnd));
        Assert.That(schedule.Phases[0].Items.Single().PriceId, Is.EqualTo(yearly.Id));
        Assert.That(schedule.Phases[0].Items.Single().Quantity, Is.EqualTo(1));
        Assert.That(schedule.Phases[0].Currency, Is.EqualTo("usd"));
        Assert.That(schedule.CurrentPhase.StartDate, Is.EqualTo(item.CurrentPeriodStart));
        Assert.That(schedule.CurrentPhase.EndDate, Is.EqualTo(item.CurrentPeriodEnd));
        Assert.That(schedule.ReleasedAt, Is.Null);

        var replay = await Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = sub.Id }, new RequestOptions { IdempotencyKey = "downgrade-1" });
        Assert.That(replay.Id, Is.EqualTo(schedule.Id), "the same Idempotency-Key answers the same schedule");

        var scheduled = await Subscriptions.GetAsync(sub.Id, new SubscriptionGetOptions { Expand = ["schedule"] });
        Assert.That(scheduled.ScheduleId, Is.EqualTo(schedule.Id));
        Assert.That(scheduled.Schedule.Phases[0].EndDate, Is.EqualTo(item.CurrentPeriodEnd));
        Assert.That((await Schedules.GetAsync(schedule.Id)).Phases[0].Items[0].PriceId, Is.EqualTo(yearly.Id));

        var events = (await Events()).Skip(eventsBefore).ToList();
        Assert.That(events.Select(Type), Is.EqualTo(new[] { "subscription_schedule.created", "customer.subscription.updated" }));
        Assert.That(events[1]["data"]!["previous_attributes"]!.ToJsonString(), Is.EqualTo("""{"schedule":null}"""));

        var listed = await Schedules.ListAsync(new SubscriptionScheduleListOptions { Customer = sub.CustomerId });
        Assert.That(listed.Data.Select(s => s.Id), Is.EqualTo(new[] { schedule.Id }));
        Assert.That((await Schedules.ListAsync(new SubscriptionScheduleListOptions { Customer = "cus_other" })).Data, Is.Empty);
    }

    [Test]
    public async Task Should_refuse_what_Stripe_refuses_when_creating()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var sub = await SubscribeAndPay(yearly);
        var schedule = await Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = sub.Id });

        var again = Assert.ThrowsAsync<StripeException>(() => Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = sub.Id }));
        Assert.That(again!.HttpStatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(again.StripeError.Message, Is.EqualTo($"You cannot migrate a subscription that is already attached to a schedule: `{schedule.Id}`."));

        var (status, body) = await PostForm("/v1/subscription_schedules", $"from_subscription={sub.Id}&phases[0][items][0][price]={yearly.Id}");
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body["error"]!["message"]!.GetValue<string>(), Is.EqualTo("You cannot set `phases` if `from_subscription` is set."));

        var missing = Assert.ThrowsAsync<StripeException>(() => Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = "sub_missing" }));
        Assert.That(missing!.HttpStatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(missing.StripeError.Code, Is.EqualTo("resource_missing"));
        Assert.That(missing.StripeError.Param, Is.EqualTo("from_subscription"));

        (status, body) = await PostForm("/v1/subscription_schedules", $"customer={sub.CustomerId}&phases[0][items][0][price]={yearly.Id}");
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body["error"]!["message"]!.GetValue<string>(), Does.Contain("not supported by the simulator"));

        var other = await SubscribeAndPay(yearly);
        await Subscriptions.CancelAsync(other.Id);
        var ended = Assert.ThrowsAsync<StripeException>(() => Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = other.Id }));
        Assert.That(ended!.StripeError.Message, Is.EqualTo("You cannot migrate a subscription that is currently in the `canceled` status."));
    }

    [Test]
    public async Task Should_validate_phases_like_Stripe()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var monthly = await CreatePrice("basic_monthly", 500, productName: "Basic");
        var oneTime = await CreatePrice("setup", 900, interval: null);
        var sub = await SubscribeAndPay(yearly);
        var schedule = await Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = sub.Id });
        var start = Unix(schedule.Phases[0].StartDate);
        var end = Unix(schedule.Phases[0].EndDate);

        async Task<string> Refused(string form)
        {
            var (status, body) = await PostForm($"/v1/subscription_schedules/{schedule.Id}", form);
            Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest), body.ToJsonString());
            return body["error"]!["message"]!.GetValue<string>();
        }

        Assert.That(await Refused($"phases[0][items][0][price]={yearly.Id}&phases[0][start_date]={start + 60}&phases[0][end_date]={end}"),
            Is.EqualTo("You can not modify the start date of the current phase."));
        Assert.That(await Refused($"phases[0][items][0][price]={yearly.Id}&phases[0][start_date]={start}&phases[0][end_date]={end}&phases[1][items][0][price]={monthly.Id}&phases[1][start_date]={end + 1}"),
            Does.Contain("phases[1] must be the end_date of the phase before it"));
        Assert.That(await Refused($"phases[0][items][0][price]={yearly.Id}&phases[0][start_date]={start}&phases[1][items][0][price]={monthly.Id}"),
            Is.EqualTo("Missing required param: phases[0][end_date]."));
        Assert.That(await Refused($"phases[0][items][0][price]={yearly.Id}&phases[0][start_date]={start}&phases[0][end_date]={end}&phases[1][items][0][price]={oneTime.Id}"),
            Is.EqualTo("The price specified must be an active recurring price."));
        Assert.That(await Refused($"phases[0][items][0][price]={yearly.Id}&phases[0][start_date]={start}&phases[0][end_date]={start}"),
            Is.EqualTo("The end_date of a phase must be after its start_date."));
        Assert.That(await Refused($"end_behavior=renew"), Is.EqualTo("Invalid end_behavior: must be one of release or cancel"));
        var (missingStatus, missingBody) = await PostForm($"/v1/subscription_schedules/{schedule.Id}",
            $"phases[0][items][0][price]={yearly.Id}&phases[0][start_date]={start}&phases[0][end_date]={end}&phases[1][items][0][price]=price_missing");
        Assert.That(missingStatus, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(missingBody["error"]!["param"]!.GetValue<string>(), Is.EqualTo("phases[1][items][0][price]"));

        // The last phase lasts one period of its price unless told otherwise; a duration counts from its start.
        var updated = await Schedules.UpdateAsync(schedule.Id, new SubscriptionScheduleUpdateOptions
        {
            Phases =
            [
                new() { Items = [new() { Price = yearly.Id }], StartDate = schedule.Phases[0].StartDate, EndDate = schedule.Phases[0].EndDate },
                new() { Items = [new() { Price = monthly.Id, Quantity = 2 }], Duration = new() { Interval = "month", IntervalCount = 3 } },
                new() { Items = [new() { Price = monthly.Id }] },
            ],
        });
        Assert.That(updated.Phases.Select(p => Unix(p.StartDate)), Is.EqualTo(new[] { start, end, Unix(schedule.Phases[0].EndDate.AddMonths(3)) }));
        Assert.That(updated.Phases[1].Items[0].Quantity, Is.EqualTo(2));
        Assert.That(updated.Phases[2].EndDate, Is.EqualTo(schedule.Phases[0].EndDate.AddMonths(4)));
        Assert.That(updated.Phases[0].Items[0].Quantity, Is.EqualTo(1), "quantity defaults to 1");
    }

    [Test]
    public async Task Should_switch_price_and_interval_at_period_end_then_release_after_the_last_phase()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var monthly = await CreatePrice("basic_monthly", 500, productName: "Basic");
        var sub = await SubscribeAndPay(yearly);
        var yearEnd = sub.Items.Data[0].CurrentPeriodEnd;

        var schedule = await ScheduleChange(sub, monthly);
        Assert.That(schedule.Phases, Has.Count.EqualTo(2));
        Assert.That(schedule.Phases[1].StartDate, Is.EqualTo(yearEnd));
        Assert.That(schedule.Phases[1].EndDate, Is.EqualTo(yearEnd.AddMonths(1)), "one period of the new price");
        Assert.That(schedule.Phases[1].Metadata["planId"], Is.EqualTo("basic"));
        Assert.That(schedule.EndBehavior, Is.EqualTo("release"));
        var unchanged = await Subscriptions.GetAsync(sub.Id);
        Assert.That(unchanged.Items.Data[0].Price.Id, Is.EqualTo(yearly.Id), "nothing changes before the period ends");
        Assert.That(unchanged.LatestInvoiceId, Is.EqualTo(sub.LatestInvoiceId));
        var upcoming = await new InvoiceService(Stripe).CreatePreviewAsync(new InvoiceCreatePreviewOptions { Subscription = sub.Id });
        Assert.That(upcoming.AmountDue, Is.EqualTo(500), "the upcoming invoice is the new price's");
        Assert.That(upcoming.Lines.Data[0].Period.End, Is.EqualTo(yearEnd.AddMonths(1)));

        var eventsBefore = (await Events()).Count;
        await AdvanceTo(Unix(yearEnd) + 60);

        var switched = await Subscriptions.GetAsync(sub.Id);
        Assert.That(switched.Status, Is.EqualTo("active"));
        Assert.That(switched.Items.Data[0].Price.Id, Is.EqualTo(monthly.Id));
        Assert.That(switched.Items.Data[0].CurrentPeriodStart, Is.EqualTo(yearEnd));
        Assert.That(switched.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(yearEnd.AddMonths(1)));
        Assert.That(switched.BillingCycleAnchor, Is.EqualTo(yearEnd));
        Assert.That(switched.Metadata["planId"], Is.EqualTo("basic"));
        Assert.That(switched.Metadata["userId"], Is.EqualTo("u42"), "phase metadata is merged, not replaced");
        Assert.That(switched.ScheduleId, Is.EqualTo(schedule.Id));
        var invoice = await new InvoiceService(Stripe).GetAsync(switched.LatestInvoiceId);
        Assert.That(invoice.BillingReason, Is.EqualTo("subscription_cycle"));
        Assert.That(invoice.Status, Is.EqualTo("paid"));
        Assert.That(invoice.AmountPaid, Is.EqualTo(500));
        Assert.That(invoice.Lines.Data.Single().Pricing.PriceDetails.PriceId, Is.EqualTo(monthly.Id));
        Assert.That(invoice.Parent.SubscriptionDetails.Metadata["planId"], Is.EqualTo("basic"));

        var events = (await Events()).Skip(eventsBefore).ToList();
        Assert.That(events.Select(Type), Is.EqualTo(new[]
        {
            "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded",
            "payment_intent.succeeded", "charge.succeeded", "customer.subscription.updated", "subscription_schedule.updated",
        }));
        var previous = events[6]["data"]!["previous_attributes"]!;
        Assert.That(previous["items"]!["data"]![0]!["price"]!["id"]!.GetValue<string>(), Is.EqualTo(yearly.Id));
        Assert.That(previous["items"]!["data"]![0]!["current_period_end"]!.GetValue<long>(), Is.EqualTo(Unix(yearEnd)));
        Assert.That(previous["metadata"]!["planId"]!.GetValue<string>(), Is.EqualTo("pro"));
        Assert.That(events[6]["created"]!.GetValue<long>(), Is.EqualTo(Unix(yearEnd)));
        Assert.That(events[7]["data"]!["previous_attributes"]!["current_phase"]!["end_date"]!.GetValue<long>(), Is.EqualTo(Unix(yearEnd)));
        schedule = await Schedules.GetAsync(schedule.Id);
        Assert.That(schedule.CurrentPhase.StartDate, Is.EqualTo(yearEnd));
        Assert.That(schedule.Status, Is.EqualTo("active"));

        // The last phase ends: the schedule lets go and the subscription renews monthly on its own.
        var monthEnd = yearEnd.AddMonths(1);
        eventsBefore = (await Events()).Count;
        await AdvanceTo(Unix(monthEnd) + 60);
        schedule = await Schedules.GetAsync(schedule.Id);
        Assert.That(schedule.Status, Is.EqualTo("released"));
        Assert.That(schedule.ReleasedAt, Is.EqualTo(monthEnd));
        Assert.That(schedule.ReleasedSubscription, Is.EqualTo(sub.Id));
        Assert.That(schedule.SubscriptionId, Is.Null);
        Assert.That(schedule.CurrentPhase, Is.Null);
        var released = await Subscriptions.GetAsync(sub.Id);
        Assert.That(released.ScheduleId, Is.Null);
        Assert.That(released.Items.Data[0].Price.Id, Is.EqualTo(monthly.Id));
        Assert.That(released.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(monthEnd.AddMonths(1)));
        events = (await Events()).Skip(eventsBefore).ToList();
        Assert.That(events.Select(Type).First(), Is.EqualTo("subscription_schedule.released"));
        Assert.That(events.Select(Type).Last(), Is.EqualTo("customer.subscription.updated"));
        Assert.That(events[^1]["data"]!["previous_attributes"]!["schedule"]!.GetValue<string>(), Is.EqualTo(schedule.Id));

        await AdvanceTo(Unix(monthEnd.AddMonths(1)) + 60);
        var invoices = await new InvoiceService(Stripe).ListAsync(new InvoiceListOptions { Subscription = sub.Id });
        Assert.That(invoices.Data.Select(i => i.AmountPaid), Is.EqualTo(new long[] { 500, 500, 500, 12000 }));
        Assert.That((await Subscriptions.GetAsync(sub.Id)).Items.Data[0].CurrentPeriodEnd, Is.EqualTo(monthEnd.AddMonths(2)));
    }

    [Test]
    public async Task Should_renew_the_old_price_when_released_before_the_period_end()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var monthly = await CreatePrice("basic_monthly", 500, productName: "Basic");
        var sub = await SubscribeAndPay(yearly);
        var yearEnd = sub.Items.Data[0].CurrentPeriodEnd;
        var schedule = await ScheduleChange(sub, monthly);
        var eventsBefore = (await Events()).Count;

        var released = await Schedules.ReleaseAsync(schedule.Id);
        Assert.That(released.Status, Is.EqualTo("released"));
        Assert.That(released.ReleasedSubscription, Is.EqualTo(sub.Id));
        Assert.That(released.ReleasedAt, Is.Not.Null);
        Assert.That(released.SubscriptionId, Is.Null);
        var events = (await Events()).Skip(eventsBefore).ToList();
        Assert.That(events.Select(Type), Is.EqualTo(new[] { "subscription_schedule.released", "customer.subscription.updated" }));
        Assert.That(events[1]["data"]!["previous_attributes"]!.ToJsonString(), Is.EqualTo($$"""{"schedule":"{{schedule.Id}}"}"""));
        Assert.That((await Subscriptions.GetAsync(sub.Id)).ScheduleId, Is.Null);

        var again = Assert.ThrowsAsync<StripeException>(() => Schedules.ReleaseAsync(schedule.Id));
        Assert.That(again!.StripeError.Message, Is.EqualTo("You cannot release a subscription schedule that is currently in the `released` status."));
        var update = Assert.ThrowsAsync<StripeException>(() => Schedules.UpdateAsync(schedule.Id, new SubscriptionScheduleUpdateOptions { EndBehavior = "cancel" }));
        Assert.That(update!.StripeError.Message, Is.EqualTo("You cannot update a subscription schedule that is currently in the `released` status."));

        await AdvanceTo(Unix(yearEnd) + 60);
        var renewed = await Subscriptions.GetAsync(sub.Id);
        Assert.That(renewed.Items.Data[0].Price.Id, Is.EqualTo(yearly.Id));
        Assert.That(renewed.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(yearEnd.AddYears(1)));
        Assert.That(renewed.Metadata["planId"], Is.EqualTo("pro"));
        Assert.That((await new InvoiceService(Stripe).GetAsync(renewed.LatestInvoiceId)).AmountPaid, Is.EqualTo(12000));

        // A new schedule can be made once the old one is released.
        var next = await Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = sub.Id });
        Assert.That(next.Id, Is.Not.EqualTo(schedule.Id));
    }

    [Test]
    public async Task Should_refuse_cancelation_changes_until_the_schedule_is_released()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var monthly = await CreatePrice("basic_monthly", 500, productName: "Basic");
        var sub = await SubscribeAndPay(yearly);
        var schedule = await ScheduleChange(sub, monthly);

        var refused = Assert.ThrowsAsync<StripeException>(() => Subscriptions.UpdateAsync(sub.Id, new SubscriptionUpdateOptions { CancelAtPeriodEnd = true }));
        Assert.That(refused!.HttpStatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(refused.StripeError.Message, Is.EqualTo(
            $"The subscription is managed by the subscription schedule `{schedule.Id}`, and updating any cancelation behavior directly is not allowed. Please update the schedule instead."));
        var (status, _) = await PostForm($"/v1/subscriptions/{sub.Id}", "cancel_at=1900000000&metadata[x]=y");
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await Subscriptions.GetAsync(sub.Id)).Metadata.ContainsKey("x"), Is.False, "nothing of a refused update is applied");

        await Schedules.ReleaseAsync(schedule.Id);
        var canceling = await Subscriptions.UpdateAsync(sub.Id, new SubscriptionUpdateOptions { CancelAtPeriodEnd = true });
        Assert.That(canceling.CancelAtPeriodEnd, Is.True);
    }

    [Test]
    public async Task Should_move_the_current_phase_along_when_the_subscription_price_changes_directly()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var team = await CreatePrice("team_yearly", 30000, "year", productName: "Team");
        var monthly = await CreatePrice("basic_monthly", 500, productName: "Basic");
        var sub = await SubscribeAndPay(yearly);
        var schedule = await ScheduleChange(sub, monthly);

        await Subscriptions.UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new SubscriptionItemOptions { Id = sub.Items.Data[0].Id, Price = team.Id }],
            ProrationBehavior = "none",
        });
        schedule = await Schedules.GetAsync(schedule.Id);
        Assert.That(schedule.Phases[0].Items[0].PriceId, Is.EqualTo(team.Id));
        Assert.That(schedule.Phases[1].Items[0].PriceId, Is.EqualTo(monthly.Id));
        Assert.That((await Events()).Select(Type), Does.Contain("subscription_schedule.updated"));
    }

    [Test]
    public async Task Should_fail_a_renewal_at_a_phase_change_like_any_failed_renewal()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var monthly = await CreatePrice("basic_monthly", 500, productName: "Basic");
        var sub = await SubscribeAndPay(yearly, "4000000000000341");
        var yearEnd = sub.Items.Data[0].CurrentPeriodEnd;
        await ScheduleChange(sub, monthly);
        var eventsBefore = (await Events()).Count;

        await AdvanceTo(Unix(yearEnd) + 60);

        var pastDue = await Subscriptions.GetAsync(sub.Id);
        Assert.That(pastDue.Status, Is.EqualTo("past_due"));
        Assert.That(pastDue.Items.Data[0].Price.Id, Is.EqualTo(monthly.Id));
        Assert.That(pastDue.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(yearEnd.AddMonths(1)));
        var invoice = await new InvoiceService(Stripe).GetAsync(pastDue.LatestInvoiceId);
        Assert.That(invoice.Status, Is.EqualTo("open"));
        Assert.That(invoice.AmountDue, Is.EqualTo(500));
        Assert.That(invoice.AttemptCount, Is.EqualTo(1));
        Assert.That(invoice.NextPaymentAttempt, Is.EqualTo(yearEnd.AddDays(3)));
        var events = (await Events()).Skip(eventsBefore).ToList();
        Assert.That(events.Select(Type), Is.EqualTo(new[]
        {
            "invoice.created", "invoice.finalized", "payment_intent.payment_failed", "charge.failed", "invoice.payment_failed",
            "customer.subscription.updated", "subscription_schedule.updated",
        }));
        Assert.That(events[5]["data"]!["previous_attributes"]!["status"]!.GetValue<string>(), Is.EqualTo("active"));

        await PostJson($"/_sim/customers/{sub.CustomerId}/card", new() { ["card"] = "4242424242424242" });
        await AdvanceTo(Unix(yearEnd.AddDays(3)) + 60);
        var recovered = await Subscriptions.GetAsync(sub.Id);
        Assert.That(recovered.Status, Is.EqualTo("active"));
        Assert.That((await new InvoiceService(Stripe).GetAsync(invoice.Id)).AmountPaid, Is.EqualTo(500));
    }

    [Test]
    public async Task Should_make_every_change_in_order_when_the_clock_passes_several_phases_at_once()
    {
        var monthly = await CreatePrice("pro_monthly", 1000);
        var basic = await CreatePrice("basic_monthly", 500, productName: "Basic");
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var sub = await SubscribeAndPay(monthly);
        var monthEnd = sub.Items.Data[0].CurrentPeriodEnd;
        var schedule = await Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = sub.Id });
        await Schedules.UpdateAsync(schedule.Id, new SubscriptionScheduleUpdateOptions
        {
            Phases =
            [
                new() { Items = [new() { Price = monthly.Id }], StartDate = schedule.Phases[0].StartDate, EndDate = schedule.Phases[0].EndDate },
                new() { Items = [new() { Price = basic.Id }], Duration = new() { Interval = "month", IntervalCount = 2 }, Metadata = new() { ["planId"] = "basic" } },
                new() { Items = [new() { Price = yearly.Id }], Metadata = new() { ["planId"] = "pro" } },
            ],
        });
        var yearlyStart = monthEnd.AddMonths(2);

        await AdvanceTo(Unix(yearlyStart.AddYears(1)) + 60); // one advance: five renewals, two phase changes, a release

        var invoices = await new InvoiceService(Stripe).ListAsync(new InvoiceListOptions { Subscription = sub.Id });
        Assert.That(invoices.Data.Select(i => i.AmountPaid).Reverse(), Is.EqualTo(new long[] { 1000, 500, 500, 12000, 12000 }));
        Assert.That(invoices.Data.Select(i => i.Lines.Data[0].Period.Start).Reverse(),
            Is.EqualTo(new[] { invoices.Data[^1].Lines.Data[0].Period.Start, monthEnd, monthEnd.AddMonths(1), yearlyStart, yearlyStart.AddYears(1) }));
        schedule = await Schedules.GetAsync(schedule.Id);
        Assert.That(schedule.Status, Is.EqualTo("released"));
        Assert.That(schedule.ReleasedAt, Is.EqualTo(yearlyStart.AddYears(1)));
        var after = await Subscriptions.GetAsync(sub.Id);
        Assert.That(after.Items.Data[0].Price.Id, Is.EqualTo(yearly.Id));
        Assert.That(after.Metadata["planId"], Is.EqualTo("pro"));
        var scheduleEvents = (await new EventService(Stripe).ListAsync(new EventListOptions { Type = "subscription_schedule.*", Limit = 100 })).Data;
        Assert.That(scheduleEvents.Select(e => e.Type).Reverse(), Is.EqualTo(new[]
        {
            "subscription_schedule.created", "subscription_schedule.updated", "subscription_schedule.updated", "subscription_schedule.updated",
            "subscription_schedule.released",
        }));
        var created = (SubscriptionSchedule)scheduleEvents[^1].Data.Object;
        Assert.That(created.Id, Is.EqualTo(schedule.Id));
        Assert.That(((SubscriptionSchedule)scheduleEvents[0].Data.Object).Status, Is.EqualTo("released"));
    }

    [Test]
    public async Task Should_change_over_in_the_middle_of_a_period_like_a_plan_change()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var team = await CreatePrice("team_yearly", 30000, "year", productName: "Team");
        var sub = await SubscribeAndPay(yearly);
        var periodEnd = sub.Items.Data[0].CurrentPeriodEnd;
        var schedule = await Schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = sub.Id });
        var middle = schedule.Phases[0].StartDate.AddDays(10);
        await Schedules.UpdateAsync(schedule.Id, new SubscriptionScheduleUpdateOptions
        {
            Phases =
            [
                new() { Items = [new() { Price = yearly.Id }], StartDate = schedule.Phases[0].StartDate, EndDate = middle },
                new() { Items = [new() { Price = team.Id }], ProrationBehavior = "none", Duration = new() { Interval = "month", IntervalCount = 1 } },
            ],
        });

        await AdvanceTo(Unix(middle) + 60);
        var changed = await Subscriptions.GetAsync(sub.Id);
        Assert.That(changed.Items.Data[0].Price.Id, Is.EqualTo(team.Id));
        Assert.That(changed.Items.Data[0].CurrentPeriodEnd, Is.EqualTo(periodEnd), "same interval: the period goes on");
        Assert.That(changed.LatestInvoiceId, Is.EqualTo(sub.LatestInvoiceId), "proration_behavior=none: nothing to bill now");
        Assert.That((await Events()).Select(Type).TakeLast(2), Is.EqualTo(new[] { "customer.subscription.updated", "subscription_schedule.updated" }));

        await AdvanceTo(Unix(middle.AddMonths(1)) + 60);
        Assert.That((await Schedules.GetAsync(schedule.Id)).Status, Is.EqualTo("released"));
        var released = await Subscriptions.GetAsync(sub.Id);
        Assert.That(released.ScheduleId, Is.Null);
        Assert.That(released.Items.Data[0].Price.Id, Is.EqualTo(team.Id));
        Assert.That((await Events()).Select(Type).TakeLast(2), Is.EqualTo(new[] { "subscription_schedule.released", "customer.subscription.updated" }));
    }

    [Test]
    public async Task Should_cancel_the_subscription_when_a_schedule_ending_with_cancel_completes()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var monthly = await CreatePrice("basic_monthly", 500, productName: "Basic");
        var sub = await SubscribeAndPay(yearly);
        var yearEnd = sub.Items.Data[0].CurrentPeriodEnd;
        var schedule = await ScheduleChange(sub, monthly, endBehavior: "cancel");
        var canceling = await Subscriptions.GetAsync(sub.Id);
        Assert.That(canceling.CancelAt, Is.EqualTo(yearEnd.AddMonths(1)), "the schedule's end shows as cancel_at");
        Assert.That(canceling.CancelAtPeriodEnd, Is.False);

        await AdvanceTo(Unix(yearEnd.AddMonths(1)) + 60);
        var ended = await Subscriptions.GetAsync(sub.Id);
        Assert.That(ended.Status, Is.EqualTo("canceled"));
        Assert.That(ended.EndedAt, Is.EqualTo(yearEnd.AddMonths(1)));
        schedule = await Schedules.GetAsync(schedule.Id);
        Assert.That(schedule.Status, Is.EqualTo("completed"));
        Assert.That(schedule.CompletedAt, Is.EqualTo(yearEnd.AddMonths(1)));
        var types = (await Events()).Select(Type).ToList();
        Assert.That(types.TakeLast(2), Is.EqualTo(new[] { "customer.subscription.deleted", "subscription_schedule.completed" }));
        Assert.That((await new InvoiceService(Stripe).ListAsync(new InvoiceListOptions { Subscription = sub.Id })).Data.Select(i => i.AmountPaid),
            Is.EqualTo(new long[] { 500, 12000 }), "no renewal after the last phase");
    }

    [Test]
    public async Task Should_cancel_schedule_and_subscription_together()
    {
        var yearly = await CreatePrice("pro_yearly", 12000, "year");
        var monthly = await CreatePrice("basic_monthly", 500, productName: "Basic");
        var first = await SubscribeAndPay(yearly);
        var firstSchedule = await ScheduleChange(first, monthly);

        var canceled = await Schedules.CancelAsync(firstSchedule.Id);
        Assert.That(canceled.Status, Is.EqualTo("canceled"));
        Assert.That(canceled.CanceledAt, Is.Not.Null);
        Assert.That((await Subscriptions.GetAsync(first.Id)).Status, Is.EqualTo("canceled"));
        Assert.That((await Events()).Select(Type).TakeLast(2), Is.EqualTo(new[] { "customer.subscription.deleted", "subscription_schedule.canceled" }));
        var again = Assert.ThrowsAsync<StripeException>(() => Schedules.CancelAsync(firstSchedule.Id));
        Assert.That(again!.StripeError.Message, Does.StartWith("You cannot cancel a subscription schedule that is currently in the `canceled` status."));

        var second = await SubscribeAndPay(yearly);
        var secondSchedule = await ScheduleChange(second, monthly);
        await Subscriptions.CancelAsync(second.Id);
        Assert.That((await Schedules.GetAsync(secondSchedule.Id)).Status, Is.EqualTo("canceled"), "deleting the subscription cancels its schedule");
    }
}
