using System.Globalization;
using System.Net;
using Stripe;
using Stripe.Billing;

namespace Billing.StripeSimulator.Tests;

/// <summary>
/// What Billing's metered overage billing needs: billing meters, metered prices backed by them, subscriptions holding the
/// plan's licensed item plus metered overage items, and meter events that end up on invoices (in arrears, each once).
/// </summary>
public abstract class MeteredBillingSpec : SimulatorSpec
{
    protected const string EventName = "ai_tokens";

    protected static MeterService Meters => new(Stripe);
    protected static SubscriptionService Subscriptions => new(Stripe);
    protected static InvoiceService Invoices => new(Stripe);

    protected static long Unix(DateTime at) => new DateTimeOffset(at).ToUnixTimeSeconds();

    protected static DateTime At(long unix) => DateTimeOffset.FromUnixTimeSeconds(unix).UtcDateTime;

    protected static Task<Meter> CreateMeter(string eventName = EventName, string displayName = "AI tokens") =>
        Meters.CreateAsync(new MeterCreateOptions
        {
            DisplayName = displayName,
            EventName = eventName,
            DefaultAggregation = new MeterDefaultAggregationOptions { Formula = "sum" },
        });

    protected static Task<Price> CreateMeteredPrice(Meter meter, decimal unitAmountDecimal, string lookupKey, string interval = "month", string productName = "AI overage") =>
        new PriceService(Stripe).CreateAsync(new PriceCreateOptions
        {
            Currency = "usd",
            UnitAmountDecimal = unitAmountDecimal,
            ProductData = new PriceProductDataOptions { Name = productName },
            Recurring = new PriceRecurringOptions { Interval = interval, UsageType = "metered", Meter = meter.Id },
            LookupKey = lookupKey,
            TransferLookupKey = true,
        });

    protected static Task<Stripe.Checkout.Session> CreateCheckout(string customerId, Price plan, params Price[] overage) =>
        new Stripe.Checkout.SessionService(Stripe).CreateAsync(new Stripe.Checkout.SessionCreateOptions
        {
            Mode = "subscription",
            Customer = customerId,
            LineItems = [new() { Price = plan.Id, Quantity = 1 }, .. overage.Select(p => new Stripe.Checkout.SessionLineItemOptions { Price = p.Id })],
            SuccessUrl = "https://app.example/success",
            CancelUrl = "https://app.example/cancel",
        });

    /// <summary>What Billing does: a checkout with the plan's price (quantity 1) and its overage prices (no quantity), paid.</summary>
    protected static async Task<Subscription> SubscribeWithOverage(Price plan, params Price[] overage)
    {
        var customer = await CreateCustomer();
        var session = await CreateCheckout(customer.Id, plan, overage);
        using var response = await Pay(session.Id);
        Assert.That((int)response.StatusCode, Is.EqualTo(303), await response.Content.ReadAsStringAsync());
        session = await new Stripe.Checkout.SessionService(Stripe).GetAsync(session.Id);
        return await Subscriptions.GetAsync(session.SubscriptionId);
    }

    /// <summary>A meter event of <paramref name="value"/> units that happened at <paramref name="at"/>.</summary>
    protected static Task<MeterEvent> Report(string customerId, long at, decimal value, string eventName = EventName) =>
        new MeterEventService(Stripe).CreateAsync(new MeterEventCreateOptions
        {
            EventName = eventName,
            Payload = new() { ["stripe_customer_id"] = customerId, ["value"] = value.ToString(CultureInfo.InvariantCulture) },
            Timestamp = At(at),
        });

    protected static SubscriptionItem PlanItem(Subscription sub) => sub.Items.Data.Single(i => i.Price.Recurring.UsageType == "licensed");

    protected static SubscriptionItem MeteredItem(Subscription sub) => sub.Items.Data.Single(i => i.Price.Recurring.UsageType == "metered");

    protected static InvoiceLineItem LineOf(Invoice invoice, Price price) => invoice.Lines.Data.Single(l => l.Pricing.PriceDetails.PriceId == price.Id);

    protected static async Task<Invoice> LatestInvoice(string subscriptionId) => await Invoices.GetAsync((await Subscriptions.GetAsync(subscriptionId)).LatestInvoiceId);

    /// <summary>How many units of <paramref name="price"/> the subscription's invoices billed, all together.</summary>
    protected static async Task<decimal> UnitsBilled(string subscriptionId, Price price)
    {
        var invoices = await Invoices.ListAsync(new InvoiceListOptions { Subscription = subscriptionId, Limit = 100 });
        return invoices.Data.SelectMany(i => i.Lines.Data).Where(l => l.Pricing.PriceDetails.PriceId == price.Id).Sum(l => l.QuantityDecimal ?? 0);
    }
}

public sealed class Defining_billing_meters : MeteredBillingSpec
{
    [Test]
    public async Task Should_create_list_get_rename_deactivate_and_reactivate_meters()
    {
        var now = await Now();
        var meter = await CreateMeter();
        Assert.That(meter.Id, Does.StartWith("mtr_"));
        Assert.That(meter.Object, Is.EqualTo("billing.meter"));
        Assert.That(meter.Status, Is.EqualTo("active"));
        Assert.That(meter.EventName, Is.EqualTo(EventName));
        Assert.That(meter.DisplayName, Is.EqualTo("AI tokens"));
        Assert.That(meter.DefaultAggregation.Formula, Is.EqualTo("sum"));
        Assert.That(meter.CustomerMapping.Type, Is.EqualTo("by_id"));
        Assert.That(meter.CustomerMapping.EventPayloadKey, Is.EqualTo("stripe_customer_id"));
        Assert.That(meter.ValueSettings.EventPayloadKey, Is.EqualTo("value"));
        Assert.That(meter.StatusTransitions.DeactivatedAt, Is.Null);
        Assert.That(meter.EventTimeWindow, Is.Null);
        Assert.That(Unix(meter.Created), Is.InRange(now, now + 60));
        Assert.That(meter.Updated, Is.EqualTo(meter.Created));

        var twice = Assert.ThrowsAsync<StripeException>(() => CreateMeter(displayName: "Same event"));
        Assert.That(twice!.HttpStatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(twice.StripeError.Type, Is.EqualTo("invalid_request_error"));
        Assert.That(twice.StripeError.Param, Is.EqualTo("event_name"));

        var images = await CreateMeter("image_generations", "Images");
        Assert.That((await Meters.ListAsync()).Data.Select(m => m.Id), Is.EqualTo(new[] { images.Id, meter.Id }), "newest first");
        var firstPage = await Meters.ListAsync(new MeterListOptions { Limit = 1 });
        Assert.That(firstPage.Data.Single().Id, Is.EqualTo(images.Id));
        Assert.That(firstPage.HasMore, Is.True);
        Assert.That((await Meters.ListAsync(new MeterListOptions { StartingAfter = images.Id })).Data.Single().Id, Is.EqualTo(meter.Id));
        Assert.That((await Meters.GetAsync(meter.Id)).EventName, Is.EqualTo(EventName));

        var renamed = await Meters.UpdateAsync(meter.Id, new MeterUpdateOptions { DisplayName = "AI tokens (overage)" });
        Assert.That(renamed.DisplayName, Is.EqualTo("AI tokens (overage)"));

        var deactivated = await Meters.DeactivateAsync(meter.Id);
        Assert.That(deactivated.Status, Is.EqualTo("inactive"));
        Assert.That(deactivated.StatusTransitions.DeactivatedAt, Is.Not.Null);
        Assert.That((await Meters.ListAsync(new MeterListOptions { Status = "inactive" })).Data.Select(m => m.Id), Is.EqualTo(new[] { meter.Id }));
        Assert.That((await Meters.ListAsync(new MeterListOptions { Status = "active" })).Data.Select(m => m.Id), Is.EqualTo(new[] { images.Id }));

        // Its event name is free again; while another active meter has it, the old one cannot come back.
        var successor = await CreateMeter();
        var back = Assert.ThrowsAsync<StripeException>(() => Meters.ReactivateAsync(meter.Id));
        Assert.That(back!.StripeError.Param, Is.EqualTo("event_name"));
        await Meters.DeactivateAsync(successor.Id);
        var reactivated = await Meters.ReactivateAsync(meter.Id);
        Assert.That(reactivated.Status, Is.EqualTo("active"));
        Assert.That(reactivated.StatusTransitions.DeactivatedAt, Is.Null);

        var missing = Assert.ThrowsAsync<StripeException>(() => Meters.GetAsync("mtr_missing"));
        Assert.That(missing!.HttpStatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(missing.StripeError.Code, Is.EqualTo("resource_missing"));
        var (status, body) = await PostForm("/v1/billing/meters", "display_name=x&event_name=x&default_aggregation[formula]=max");
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body["error"]!["param"]!.GetValue<string>(), Is.EqualTo("default_aggregation[formula]"));
        (status, body) = await PostForm("/v1/billing/meters", "display_name=x&event_name=x");
        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body["error"]!["param"]!.GetValue<string>(), Is.EqualTo("default_aggregation[formula]"));
    }

    [Test]
    public async Task Should_read_the_customer_and_the_value_from_the_meter_payload_keys()
    {
        var customer = await CreateCustomer();
        await Meters.CreateAsync(new MeterCreateOptions
        {
            DisplayName = "Tokens",
            EventName = "tokens",
            DefaultAggregation = new() { Formula = "sum" },
            CustomerMapping = new() { Type = "by_id", EventPayloadKey = "customer" },
            ValueSettings = new() { EventPayloadKey = "tokens" },
        });
        var events = new MeterEventService(Stripe);
        await events.CreateAsync(new MeterEventCreateOptions { EventName = "tokens", Payload = new() { ["customer"] = customer.Id, ["tokens"] = "12" } });
        await events.CreateAsync(new MeterEventCreateOptions { EventName = "tokens", Payload = new() { ["customer"] = customer.Id, ["tokens"] = "3" } });

        var wrongKeys = Assert.ThrowsAsync<StripeException>(() => events.CreateAsync(new MeterEventCreateOptions
        {
            EventName = "tokens",
            Payload = new() { ["stripe_customer_id"] = customer.Id, ["value"] = "1" },
        }));
        Assert.That(wrongKeys!.HttpStatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(wrongKeys.StripeError.Param, Is.EqualTo("payload[customer]"));

        var recorded = await GetJson("/_sim/meter_events");
        Assert.That(recorded["data"]![0]!["customer"]!.GetValue<string>(), Is.EqualTo(customer.Id));
        Assert.That(recorded["data"]![0]!["value"]!.GetValue<string>(), Is.EqualTo("3"));
        var meters = await GetJson("/_sim/meters");
        Assert.That(meters["data"]![0]!["usage_by_customer"]![customer.Id]!.GetValue<string>(), Is.EqualTo("15"));
        Assert.That(meters["data"]![0]!["event_count"]!.GetValue<int>(), Is.EqualTo(2));
    }
}

public sealed class Pricing_overage_with_metered_prices : MeteredBillingSpec
{
    [Test]
    public async Task Should_back_a_metered_price_by_a_meter_and_keep_its_fractional_unit_amount()
    {
        var meter = await CreateMeter();
        var prices = new PriceService(Stripe);
        PriceCreateOptions Metered(string? meterId) => new()
        {
            Currency = "usd",
            UnitAmountDecimal = 0.5m,
            ProductData = new PriceProductDataOptions { Name = "AI overage" },
            Recurring = new PriceRecurringOptions { Interval = "month", UsageType = "metered", Meter = meterId },
        };
        var withoutMeter = Assert.ThrowsAsync<StripeException>(() => prices.CreateAsync(Metered(null)));
        Assert.That(withoutMeter!.HttpStatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(withoutMeter.StripeError.Param, Is.EqualTo("recurring[meter]"));
        var unknownMeter = Assert.ThrowsAsync<StripeException>(() => prices.CreateAsync(Metered("mtr_missing")));
        Assert.That(unknownMeter!.HttpStatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(unknownMeter.StripeError.Param, Is.EqualTo("recurring[meter]"));

        var overage = await CreateMeteredPrice(meter, 0.5m, "overage_ai_tokens_month_usd");
        Assert.That(overage.Type, Is.EqualTo("recurring"));
        Assert.That(overage.Recurring.UsageType, Is.EqualTo("metered"));
        Assert.That(overage.Recurring.Meter, Is.EqualTo(meter.Id));
        Assert.That(overage.UnitAmount, Is.Null);
        Assert.That(overage.UnitAmountDecimal, Is.EqualTo(0.5m));
        var raw = await GetJson($"/v1/prices/{overage.Id}");
        Assert.That(raw["unit_amount_decimal"]!.GetValue<string>(), Is.EqualTo("0.5"));
        Assert.That(raw["unit_amount"], Is.Null);

        Assert.That((await prices.ListAsync(new PriceListOptions { LookupKeys = ["overage_ai_tokens_month_usd"] })).Data.Single().Id, Is.EqualTo(overage.Id));
        Assert.That((await prices.ListAsync(new PriceListOptions { Product = overage.ProductId })).Data.Single().Id, Is.EqualTo(overage.Id));
        var cheaper = await CreateMeteredPrice(meter, 0.25m, "overage_ai_tokens_month_usd");
        Assert.That((await prices.GetAsync(overage.Id)).LookupKey, Is.Null, "transfer_lookup_key moves the key");
        Assert.That((await prices.ListAsync(new PriceListOptions { LookupKeys = ["overage_ai_tokens_month_usd"], Active = true })).Data.Single().Id, Is.EqualTo(cheaper.Id));

        var both = Assert.ThrowsAsync<StripeException>(() => prices.CreateAsync(new PriceCreateOptions
        {
            Currency = "usd", UnitAmount = 1, UnitAmountDecimal = 0.5m, ProductData = new() { Name = "x" },
        }));
        Assert.That(both!.HttpStatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var licensed = await prices.CreateAsync(new PriceCreateOptions
        {
            Currency = "usd", UnitAmountDecimal = 1200m, ProductData = new() { Name = "Pro" }, Recurring = new() { Interval = "month" },
        });
        Assert.That(licensed.UnitAmount, Is.EqualTo(1200));
        Assert.That(licensed.Recurring.UsageType, Is.EqualTo("licensed"));
        Assert.That(licensed.Recurring.Meter, Is.Null);
    }

    [Test]
    public async Task Should_refuse_a_quantity_for_a_metered_item_and_a_mix_of_intervals()
    {
        var meter = await CreateMeter();
        var plan = await CreatePrice("pro_monthly", 500);
        var overage = await CreateMeteredPrice(meter, 0.5m, "overage_month");
        var yearlyOverage = await CreateMeteredPrice(meter, 0.5m, "overage_year", interval: "year");
        var customer = await CreateCustomer();
        var sessions = new Stripe.Checkout.SessionService(Stripe);

        var withQuantity = Assert.ThrowsAsync<StripeException>(() => sessions.CreateAsync(new Stripe.Checkout.SessionCreateOptions
        {
            Mode = "subscription",
            Customer = customer.Id,
            LineItems = [new() { Price = plan.Id, Quantity = 1 }, new() { Price = overage.Id, Quantity = 1 }],
            SuccessUrl = "https://app.example/success",
        }));
        Assert.That(withQuantity!.HttpStatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(withQuantity.StripeError.Message, Does.StartWith("Quantity should not be specified where usage_type is `metered`"));
        Assert.That(withQuantity.StripeError.Param, Is.EqualTo("line_items[1][quantity]"));
        var mixed = Assert.ThrowsAsync<StripeException>(() => CreateCheckout(customer.Id, plan, yearlyOverage));
        Assert.That(mixed!.StripeError.Message, Is.EqualTo("Currency and interval fields must match across all plans on this subscription. Found mismatch in interval field."));

        var sub = await SubscribeWithOverage(plan, overage);
        var quantity = Assert.ThrowsAsync<StripeException>(() => Subscriptions.UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new SubscriptionItemOptions { Id = MeteredItem(sub).Id, Quantity = 2 }],
        }));
        Assert.That(quantity!.StripeError.Param, Is.EqualTo("items[0][quantity]"));
        var mixedUpdate = Assert.ThrowsAsync<StripeException>(() => Subscriptions.UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new SubscriptionItemOptions { Id = MeteredItem(sub).Id, Deleted = true }, new SubscriptionItemOptions { Price = yearlyOverage.Id }],
        }));
        Assert.That(mixedUpdate!.StripeError.Message, Does.Contain("Found mismatch in interval field"));
        Assert.That((await Subscriptions.GetAsync(sub.Id)).Items.Data.Select(i => i.Price.Id), Is.EqualTo(new[] { plan.Id, overage.Id }), "nothing changed");
    }
}

public sealed class Billing_metered_usage : MeteredBillingSpec
{
    [Test]
    public async Task Should_subscribe_to_the_plan_and_its_overage_at_checkout_and_bill_only_the_plan_first()
    {
        var meter = await CreateMeter();
        var plan = await CreatePrice("pro_monthly", 500);
        var overage = await CreateMeteredPrice(meter, 0.5m, "overage_ai_tokens_month_usd");

        var sub = await SubscribeWithOverage(plan, overage);

        Assert.That(sub.Items.Data, Has.Count.EqualTo(2));
        Assert.That(PlanItem(sub).Quantity, Is.EqualTo(1));
        Assert.That(MeteredItem(sub).Price.Recurring.Meter, Is.EqualTo(meter.Id));
        Assert.That(MeteredItem(sub).CurrentPeriodEnd, Is.EqualTo(PlanItem(sub).CurrentPeriodEnd));
        var raw = await GetJson($"/v1/subscriptions/{sub.Id}");
        Assert.That(raw["items"]!["data"]![1]!.AsObject().ContainsKey("quantity"), Is.False, "a metered item has no quantity");
        var invoice = await Invoices.GetAsync(sub.LatestInvoiceId);
        Assert.That(invoice.BillingReason, Is.EqualTo("subscription_create"));
        Assert.That(invoice.AmountPaid, Is.EqualTo(500));
        Assert.That(invoice.Lines.Data, Has.Count.EqualTo(2));
        Assert.That(LineOf(invoice, plan).Amount, Is.EqualTo(500));
        Assert.That(LineOf(invoice, overage).Amount, Is.EqualTo(0), "metered usage is billed in arrears");
        Assert.That(LineOf(invoice, overage).Parent.SubscriptionItemDetails.SubscriptionItem, Is.EqualTo(MeteredItem(sub).Id));
        var sessions = await new Stripe.Checkout.SessionService(Stripe).ListAsync(new Stripe.Checkout.SessionListOptions { Subscription = sub.Id });
        var lineItems = await new Stripe.Checkout.SessionLineItemService(Stripe).ListAsync(sessions.Data.Single().Id);
        Assert.That(lineItems.Data.Select(li => li.Quantity), Is.EqualTo(new long?[] { 1, null }));
    }

    [Test]
    public async Task Should_bill_the_usage_of_the_ended_period_at_the_renewal_and_never_again()
    {
        var meter = await CreateMeter();
        var plan = await CreatePrice("pro_monthly", 500);
        var overage = await CreateMeteredPrice(meter, 0.5m, "overage_ai_tokens_month_usd");
        var sub = await SubscribeWithOverage(plan, overage);
        var other = await CreateCustomer("u43");
        var start = Unix(PlanItem(sub).CurrentPeriodStart);
        var end = Unix(PlanItem(sub).CurrentPeriodEnd);

        await Report(sub.CustomerId, start - 3600, 1000); // before the subscription
        await AdvanceTo(start + 86400);
        await Report(sub.CustomerId, await Now(), 2);
        await Report(other.Id, await Now(), 100); // someone else's
        await AdvanceTo(end - 60);
        await Report(sub.CustomerId, await Now(), 3);
        await AdvanceTo(end + 60);

        var renewal = await LatestInvoice(sub.Id);
        Assert.That(renewal.BillingReason, Is.EqualTo("subscription_cycle"));
        Assert.That(renewal.Status, Is.EqualTo("paid"));
        var usage = LineOf(renewal, overage);
        Assert.That(usage.Quantity, Is.EqualTo(5));
        Assert.That(usage.QuantityDecimal, Is.EqualTo(5m));
        Assert.That(usage.Amount, Is.EqualTo(3), "5 × 0.5 = 2.5, rounded half away from zero");
        Assert.That(usage.Pricing.UnitAmountDecimal, Is.EqualTo(0.5m));
        Assert.That(Unix(usage.Period.Start), Is.EqualTo(start));
        Assert.That(Unix(usage.Period.End), Is.EqualTo(end));
        Assert.That(usage.Parent.SubscriptionItemDetails.SubscriptionItem, Is.EqualTo(MeteredItem(sub).Id));
        Assert.That(usage.Parent.SubscriptionItemDetails.Proration, Is.False);
        var planLine = LineOf(renewal, plan);
        Assert.That(planLine.Amount, Is.EqualTo(500));
        Assert.That(Unix(planLine.Period.Start), Is.EqualTo(end));
        Assert.That(renewal.Total, Is.EqualTo(503));
        Assert.That(renewal.AmountPaid, Is.EqualTo(503));
        var payments = await new InvoicePaymentService(Stripe).ListAsync(new InvoicePaymentListOptions { Invoice = renewal.Id });
        var charge = await new PaymentIntentService(Stripe).GetAsync(payments.Data.Single().Payment.PaymentIntentId);
        Assert.That(charge.AmountReceived, Is.EqualTo(503));

        // A late event for the invoiced period is not billed; the next renewal bills the next period only.
        await Report(sub.CustomerId, end - 30, 7);
        await Report(sub.CustomerId, await Now(), 40);
        var nextEnd = Unix((await Subscriptions.GetAsync(sub.Id)).Items.Data[0].CurrentPeriodEnd);
        await AdvanceTo(nextEnd + 60);
        var next = await LatestInvoice(sub.Id);
        Assert.That(next.Id, Is.Not.EqualTo(renewal.Id));
        Assert.That(LineOf(next, overage).Quantity, Is.EqualTo(40));
        Assert.That(LineOf(next, overage).Amount, Is.EqualTo(20));
        Assert.That(Unix(LineOf(next, overage).Period.Start), Is.EqualTo(end));
        Assert.That(await UnitsBilled(sub.Id, overage), Is.EqualTo(45m));
    }

    [Test]
    public async Task Should_bill_the_usage_so_far_on_the_upgrade_invoice_when_the_metered_price_is_replaced_with_always_invoice()
    {
        var meter = await CreateMeter();
        var pro = await CreatePrice("pro_monthly", 1000);
        var team = await CreatePrice("team_monthly", 3000, productName: "Team");
        var proOverage = await CreateMeteredPrice(meter, 0.5m, "overage_pro");
        var teamOverage = await CreateMeteredPrice(meter, 0.25m, "overage_team", productName: "AI overage (Team)");
        var sub = await SubscribeWithOverage(pro, proOverage);
        var start = Unix(PlanItem(sub).CurrentPeriodStart);
        var end = Unix(PlanItem(sub).CurrentPeriodEnd);
        await AdvanceTo(start + 86400);
        await Report(sub.CustomerId, await Now(), 7);
        var half = start + (end - start) / 2;
        await AdvanceTo(half);

        var preview = await Invoices.CreatePreviewAsync(new InvoiceCreatePreviewOptions
        {
            Subscription = sub.Id,
            SubscriptionDetails = new InvoiceSubscriptionDetailsOptions
            {
                Items = [new() { Id = PlanItem(sub).Id, Price = team.Id }, new() { Id = MeteredItem(sub).Id, Price = teamOverage.Id }],
                ProrationBehavior = "always_invoice",
                ProrationDate = At(half),
            },
        });
        var updated = await Subscriptions.UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new() { Id = PlanItem(sub).Id, Price = team.Id }, new() { Id = MeteredItem(sub).Id, Price = teamOverage.Id }],
            ProrationBehavior = "always_invoice",
            ProrationDate = At(half),
            PaymentBehavior = "error_if_incomplete",
            Expand = ["latest_invoice"],
        });

        var invoice = updated.LatestInvoice;
        Assert.That(invoice.BillingReason, Is.EqualTo("subscription_update"));
        Assert.That(invoice.Status, Is.EqualTo("paid"));
        var usage = LineOf(invoice, proOverage);
        Assert.That(usage.Quantity, Is.EqualTo(7));
        Assert.That(usage.Amount, Is.EqualTo(4), "7 × 0.5 = 3.5");
        Assert.That(Unix(usage.Period.Start), Is.EqualTo(start));
        Assert.That(Unix(usage.Period.End), Is.InRange(half, half + 60));
        var remaining = end - half;
        var prorations = (long)Math.Round(3000m * remaining / (end - start), MidpointRounding.AwayFromZero)
                         - (long)Math.Round(1000m * remaining / (end - start), MidpointRounding.AwayFromZero);
        Assert.That(invoice.AmountPaid, Is.EqualTo(prorations + 4));
        Assert.That(preview.AmountDue, Is.EqualTo(invoice.AmountDue), "the preview showed what the upgrade charged");
        Assert.That(MeteredItem(updated).Id, Is.EqualTo(MeteredItem(sub).Id), "the item keeps its id, with the new price");
        Assert.That(MeteredItem(updated).Price.Id, Is.EqualTo(teamOverage.Id));
        Assert.That(PlanItem(updated).Price.Id, Is.EqualTo(team.Id));

        await Report(sub.CustomerId, half - 10, 11); // reported late, for the time already billed
        await Advance(3600);
        await Report(sub.CustomerId, await Now(), 6);
        await AdvanceTo(end + 60);
        var renewal = await LatestInvoice(sub.Id);
        Assert.That(renewal.Lines.Data.Any(l => l.Pricing.PriceDetails.PriceId == proOverage.Id), Is.False);
        Assert.That(LineOf(renewal, teamOverage).Quantity, Is.EqualTo(6), "only the usage after the change");
        Assert.That(LineOf(renewal, teamOverage).Amount, Is.EqualTo(2), "6 × 0.25 = 1.5");
        Assert.That(LineOf(renewal, team).Amount, Is.EqualTo(3000));
        Assert.That(renewal.AmountPaid, Is.EqualTo(3002));
    }

    [Test]
    public async Task Should_not_bill_the_usage_so_far_when_the_metered_item_leaves_with_proration_none()
    {
        var meter = await CreateMeter();
        var pro = await CreatePrice("pro_monthly", 1000);
        var team = await CreatePrice("team_monthly", 3000, productName: "Team");
        var proOverage = await CreateMeteredPrice(meter, 0.5m, "overage_pro");
        var teamOverage = await CreateMeteredPrice(meter, 0.25m, "overage_team", productName: "AI overage (Team)");
        var sub = await SubscribeWithOverage(pro, proOverage);
        var end = Unix(PlanItem(sub).CurrentPeriodEnd);
        await Advance(86400);
        await Report(sub.CustomerId, await Now(), 7);
        await Advance(86400);

        // Billing's change: the plan item's price, the old overage item deleted, the new one added.
        var updated = await Subscriptions.UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items =
            [
                new() { Id = PlanItem(sub).Id, Price = team.Id },
                new() { Id = MeteredItem(sub).Id, Deleted = true },
                new() { Price = teamOverage.Id },
            ],
            ProrationBehavior = "none",
        });
        Assert.That(updated.LatestInvoiceId, Is.EqualTo(sub.LatestInvoiceId), "nothing is invoiced now");
        Assert.That(updated.Items.Data.Select(i => i.Price.Id), Is.EqualTo(new[] { team.Id, teamOverage.Id }));
        Assert.That(MeteredItem(updated).Id, Is.Not.EqualTo(MeteredItem(sub).Id));

        await Advance(3600);
        await Report(sub.CustomerId, await Now(), 6);
        await AdvanceTo(end + 60);
        var renewal = await LatestInvoice(sub.Id);
        Assert.That(LineOf(renewal, teamOverage).Quantity, Is.EqualTo(6), "the added item counts from when it was added");
        Assert.That(await UnitsBilled(sub.Id, proOverage), Is.EqualTo(0m), "the usage before the change is dropped");
        Assert.That(renewal.AmountPaid, Is.EqualTo(3000 + 2));
    }

    [Test]
    public async Task Should_leave_the_usage_so_far_for_the_next_invoice_with_create_prorations()
    {
        var meter = await CreateMeter();
        var pro = await CreatePrice("pro_monthly", 1000);
        var proOverage = await CreateMeteredPrice(meter, 0.5m, "overage_pro");
        var cheaper = await CreateMeteredPrice(meter, 0.25m, "overage_cheaper");
        var sub = await SubscribeWithOverage(pro, proOverage);
        var end = Unix(PlanItem(sub).CurrentPeriodEnd);
        await Advance(86400);
        await Report(sub.CustomerId, await Now(), 9);
        await Advance(86400);

        var updated = await Subscriptions.UpdateAsync(sub.Id, new SubscriptionUpdateOptions
        {
            Items = [new() { Id = MeteredItem(sub).Id, Price = cheaper.Id }],
            ProrationBehavior = "create_prorations",
        });
        Assert.That(updated.LatestInvoiceId, Is.EqualTo(sub.LatestInvoiceId));
        await Advance(3600);
        await Report(sub.CustomerId, await Now(), 4);
        await AdvanceTo(end + 60);

        var renewal = await LatestInvoice(sub.Id);
        Assert.That(LineOf(renewal, proOverage).Quantity, Is.EqualTo(9), "the pending usage of the old price");
        Assert.That(LineOf(renewal, proOverage).Amount, Is.EqualTo(5));
        Assert.That(LineOf(renewal, cheaper).Quantity, Is.EqualTo(4));
        Assert.That(LineOf(renewal, cheaper).Amount, Is.EqualTo(1));
        Assert.That(renewal.AmountPaid, Is.EqualTo(1000 + 5 + 1));
        Assert.That(await UnitsBilled(sub.Id, proOverage), Is.EqualTo(9m));
    }

    [Test]
    public async Task Should_bill_the_ended_period_at_the_old_metered_price_when_a_schedule_phase_changes_it()
    {
        var meter = await CreateMeter();
        var pro = await CreatePrice("pro_monthly", 1000);
        var basic = await CreatePrice("basic_monthly", 500, productName: "Basic");
        var proOverage = await CreateMeteredPrice(meter, 0.5m, "overage_pro");
        var basicOverage = await CreateMeteredPrice(meter, 0.25m, "overage_basic", productName: "AI overage (Basic)");
        var sub = await SubscribeWithOverage(pro, proOverage);
        var start = Unix(PlanItem(sub).CurrentPeriodStart);
        var end = Unix(PlanItem(sub).CurrentPeriodEnd);
        var schedules = new SubscriptionScheduleService(Stripe);

        var schedule = await schedules.CreateAsync(new SubscriptionScheduleCreateOptions { FromSubscription = sub.Id });
        Assert.That(schedule.Phases[0].Items.Select(i => i.PriceId), Is.EqualTo(new[] { pro.Id, proOverage.Id }), "from_subscription copies every item");
        schedule = await schedules.UpdateAsync(schedule.Id, new SubscriptionScheduleUpdateOptions
        {
            EndBehavior = "release",
            ProrationBehavior = "none",
            Phases =
            [
                new()
                {
                    Items = [new() { Price = pro.Id, Quantity = 1 }, new() { Price = proOverage.Id }],
                    StartDate = schedule.Phases[0].StartDate,
                    EndDate = schedule.Phases[0].EndDate,
                    ProrationBehavior = "none",
                },
                new()
                {
                    Items = [new() { Price = basic.Id, Quantity = 1 }, new() { Price = basicOverage.Id }],
                    BillingCycleAnchor = "phase_start",
                    ProrationBehavior = "none",
                },
            ],
        });
        Assert.That(schedule.Phases[1].Items.Select(i => i.PriceId), Is.EqualTo(new[] { basic.Id, basicOverage.Id }));
        Assert.That((await Subscriptions.GetAsync(sub.Id)).Items.Data.Select(i => i.Price.Id), Is.EqualTo(new[] { pro.Id, proOverage.Id }), "nothing changes before the phase ends");

        await AdvanceTo(start + 86400);
        await Report(sub.CustomerId, await Now(), 5);
        await AdvanceTo(end + 60);

        var renewal = await LatestInvoice(sub.Id);
        Assert.That(renewal.BillingReason, Is.EqualTo("subscription_cycle"));
        var usage = LineOf(renewal, proOverage);
        Assert.That(usage.Quantity, Is.EqualTo(5));
        Assert.That(usage.Amount, Is.EqualTo(3), "the ended period, at the price it had");
        Assert.That(Unix(usage.Period.End), Is.EqualTo(end));
        Assert.That(LineOf(renewal, basic).Amount, Is.EqualTo(500));
        Assert.That(renewal.Lines.Data.Any(l => l.Pricing.PriceDetails.PriceId == basicOverage.Id), Is.False, "the new item has no usage yet");
        Assert.That(renewal.AmountPaid, Is.EqualTo(503));
        var switched = await Subscriptions.GetAsync(sub.Id);
        Assert.That(switched.Items.Data.Select(i => i.Price.Id), Is.EqualTo(new[] { basic.Id, basicOverage.Id }));
        Assert.That(MeteredItem(switched).CurrentPeriodStart, Is.EqualTo(PlanItem(switched).CurrentPeriodStart));

        await Advance(3600);
        await Report(sub.CustomerId, await Now(), 4);
        await AdvanceTo(Unix(PlanItem(switched).CurrentPeriodEnd) + 60);
        var next = await LatestInvoice(sub.Id);
        Assert.That(LineOf(next, basicOverage).Quantity, Is.EqualTo(4));
        Assert.That(LineOf(next, basicOverage).Amount, Is.EqualTo(1));
        Assert.That(await UnitsBilled(sub.Id, proOverage), Is.EqualTo(5m));
    }

    [Test]
    public async Task Should_bill_the_last_usage_on_a_final_invoice_when_the_subscription_ends()
    {
        var meter = await CreateMeter();
        var plan = await CreatePrice("pro_monthly", 500);
        var overage = await CreateMeteredPrice(meter, 0.5m, "overage_ai_tokens_month_usd");

        // Canceled at the period end: the period's usage is billed as the subscription ends.
        var atPeriodEnd = await SubscribeWithOverage(plan, overage);
        var end = Unix(PlanItem(atPeriodEnd).CurrentPeriodEnd);
        await Advance(86400);
        await Report(atPeriodEnd.CustomerId, await Now(), 3);
        await Subscriptions.UpdateAsync(atPeriodEnd.Id, new SubscriptionUpdateOptions { CancelAtPeriodEnd = true });
        await AdvanceTo(end + 60);
        var ended = await Subscriptions.GetAsync(atPeriodEnd.Id);
        Assert.That(ended.Status, Is.EqualTo("canceled"));
        var final = await Invoices.GetAsync(ended.LatestInvoiceId);
        Assert.That(final.BillingReason, Is.EqualTo("subscription_cycle"));
        Assert.That(final.Lines.Data.Single().Quantity, Is.EqualTo(3));
        Assert.That(final.AmountPaid, Is.EqualTo(2), "3 × 0.5 = 1.5");
        var types = await EventTypes();
        Assert.That(types.LastIndexOf("invoice.paid"), Is.LessThan(types.LastIndexOf("customer.subscription.deleted")), "the final invoice, then the end");

        // Canceled now with invoice_now: the usage so far; without it: nothing.
        var now = await SubscribeWithOverage(plan, overage);
        await Advance(3600);
        await Report(now.CustomerId, await Now(), 9);
        await Advance(60);
        var canceled = await Subscriptions.CancelAsync(now.Id, new SubscriptionCancelOptions { InvoiceNow = true });
        Assert.That(canceled.Status, Is.EqualTo("canceled"));
        var invoiced = await Invoices.GetAsync(canceled.LatestInvoiceId);
        Assert.That(invoiced.Id, Is.Not.EqualTo(now.LatestInvoiceId));
        Assert.That(invoiced.Lines.Data.Single().Quantity, Is.EqualTo(9));
        Assert.That(invoiced.AmountPaid, Is.EqualTo(5), "9 × 0.5 = 4.5");

        var dropped = await SubscribeWithOverage(plan, overage);
        await Advance(3600);
        await Report(dropped.CustomerId, await Now(), 4);
        await Advance(60);
        var gone = await Subscriptions.CancelAsync(dropped.Id);
        Assert.That(gone.LatestInvoiceId, Is.EqualTo(dropped.LatestInvoiceId));
    }
}

/// <summary>
/// Meter event summaries (<c>GET /v1/billing/meters/{id}/event_summaries</c>): what Billing's overage check compares its
/// own records with. Stripe accepts an event first and may reject it afterwards (an error report); a rejected event counts
/// nowhere, in summaries as on invoices.
/// </summary>
public sealed class Summarizing_meter_events : MeteredBillingSpec
{
    private static MeterEventSummaryService Summaries => new(Stripe);

    [Test]
    public async Task Should_sum_one_customers_events_of_the_meter_in_the_range_as_one_summary_or_per_hour()
    {
        var meter = await CreateMeter("summed_tokens");
        var customer = await CreateCustomer();
        var other = await CreateCustomer("u43");
        var hour = (await Now()) / 3600 * 3600 + 3600;
        await AdvanceTo(hour + 3 * 3600);
        await Report(customer.Id, hour + 10, 2, "summed_tokens");
        await Report(customer.Id, hour + 3599, 3, "summed_tokens");
        await Report(customer.Id, hour + 3600, 5, "summed_tokens");
        await Report(customer.Id, hour + 2 * 3600, 100, "summed_tokens"); // after the range
        await Report(customer.Id, hour + 20, 1000, "other_tokens"); // another meter's
        await Report(other.Id, hour + 20, 1000, "summed_tokens"); // someone else's

        var one = await Summaries.ListAsync(meter.Id, new MeterEventSummaryListOptions
        {
            Customer = customer.Id, StartTime = At(hour), EndTime = At(hour + 2 * 3600),
        });
        Assert.That(one.Data.Select(s => (s.AggregatedValue, Unix(s.StartTime), Unix(s.EndTime), s.Meter)),
            Is.EqualTo(new[] { (10d, hour, hour + 2 * 3600, meter.Id) }));

        var hourly = await Summaries.ListAsync(meter.Id, new MeterEventSummaryListOptions
        {
            Customer = customer.Id, StartTime = At(hour), EndTime = At(hour + 2 * 3600), ValueGroupingWindow = "hour",
        });
        Assert.That(hourly.Data.Select(s => (s.AggregatedValue, Unix(s.StartTime))), Is.EqualTo(new[] { (5d, hour + 3600), (5d, hour) }),
            "newest first");
    }

    [Test]
    public async Task Should_refuse_a_range_off_minute_boundaries_and_a_customer_it_does_not_know()
    {
        var meter = await CreateMeter("bounded_tokens");
        var customer = await CreateCustomer();
        var minute = (await Now()) / 60 * 60;

        var offMinute = Assert.ThrowsAsync<StripeException>(() => Summaries.ListAsync(meter.Id, new MeterEventSummaryListOptions
        {
            Customer = customer.Id, StartTime = At(minute - 90), EndTime = At(minute),
        }));
        Assert.That((offMinute!.HttpStatusCode, offMinute.StripeError.Param), Is.EqualTo((HttpStatusCode.BadRequest, "start_time")));
        var unknown = Assert.ThrowsAsync<StripeException>(() => Summaries.ListAsync(meter.Id, new MeterEventSummaryListOptions
        {
            Customer = "cus_nobody", StartTime = At(minute - 60), EndTime = At(minute),
        }));
        Assert.That(unknown!.HttpStatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task Should_count_an_event_rejected_after_it_was_accepted_in_no_summary()
    {
        var meter = await CreateMeter("rejected_tokens");
        var customer = await CreateCustomer();
        var minute = (await Now()) / 60 * 60;
        await Report(customer.Id, minute + 1, 4, "rejected_tokens");
        var rejected = await Report(customer.Id, minute + 2, 6, "rejected_tokens");

        using var response = await Http.PostAsync($"/_sim/meter_events/{rejected.Identifier}/reject",
            new FormUrlEncodedContent(new Dictionary<string, string> { ["code"] = "meter_event_customer_not_found" }));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());

        var summary = await Summaries.ListAsync(meter.Id, new MeterEventSummaryListOptions
        {
            Customer = customer.Id, StartTime = At(minute), EndTime = At(minute + 60),
        });
        Assert.That(summary.Data.Single().AggregatedValue, Is.EqualTo(4d));
        var events = await GetJson("/_sim/meter_events");
        Assert.That(events["data"]!.AsArray().Single(e => e!["identifier"]!.GetValue<string>() == rejected.Identifier)!["rejected_with"]!.GetValue<string>(),
            Is.EqualTo("meter_event_customer_not_found"));
    }
}
