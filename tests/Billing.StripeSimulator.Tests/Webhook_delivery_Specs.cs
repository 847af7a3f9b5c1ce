using System.Text.Json.Nodes;
using Stripe;

namespace Billing.StripeSimulator.Tests;

public sealed class Delivering_webhooks : SimulatorSpec
{
    [Test]
    public async Task Should_sign_events_so_that_Stripe_net_accepts_them()
    {
        var price = await CreatePrice("pro_monthly", 500);
        await SubscribeAndPay(price);
        var received = await WaitForWebhooks(w => w.Any(x => x.Type == "checkout.session.completed") && w.Any(x => x.Type == "invoice.paid"));

        foreach (var webhook in received)
        {
            var evt = EventUtility.ConstructEvent(webhook.Body, webhook.Signature, SimulatorHost.Secret);
            Assert.That(evt.Id, Does.StartWith("evt_"));
            Assert.That(evt.ApiVersion, Is.EqualTo("2026-10-28.endive"));
            var timestamp = long.Parse(webhook.Signature.Split(',')[0][2..]);
            Assert.That(Math.Abs(timestamp - DateTimeOffset.UtcNow.ToUnixTimeSeconds()), Is.LessThan(60), "t is wall-clock time");
        }
        var completed = EventUtility.ConstructEvent(received.First(w => w.Type == "checkout.session.completed").Body, received.First(w => w.Type == "checkout.session.completed").Signature, SimulatorHost.Secret);
        Assert.That(completed.Data.Object, Is.TypeOf<Stripe.Checkout.Session>());
        Assert.That(((Stripe.Checkout.Session)completed.Data.Object).Metadata["userId"], Is.EqualTo("u42"));
        var paid = EventUtility.ConstructEvent(received.First(w => w.Type == "invoice.paid").Body, received.First(w => w.Type == "invoice.paid").Signature, SimulatorHost.Secret);
        Assert.That(((Invoice)paid.Data.Object).Parent.SubscriptionDetails.SubscriptionId, Does.StartWith("sub_"));
        var created = received.First(w => w.Type == "customer.subscription.created");
        var subEvent = EventUtility.ConstructEvent(created.Body, created.Signature, SimulatorHost.Secret);
        Assert.That(((Subscription)subEvent.Data.Object).Items.Data[0].CurrentPeriodEnd, Is.GreaterThan(DateTime.UtcNow));
    }

    [Test]
    public async Task Should_deliver_in_creation_order()
    {
        var price = await CreatePrice("pro_monthly", 500);
        await SubscribeAndPay(price);
        var received = await WaitForWebhooks(w => w.Any(x => x.Type == "checkout.session.completed"));
        var types = received.Select(w => w.Type).Where(t => !t.StartsWith("price.") && !t.StartsWith("product.") && t != "customer.created").ToList();
        Assert.That(types.First(), Is.EqualTo("customer.subscription.created"));
        Assert.That(types.Last(), Is.EqualTo("checkout.session.completed"));
    }

    [Test]
    public async Task Should_retry_a_failed_delivery_and_record_the_attempts()
    {
        SimulatorHost.FailNextDeliveries = 1;
        var customer = await CreateCustomer();
        await WaitForWebhooks(w => w.Any(x => x.Type == "customer.created"), 8_000);
        var events = await GetJson("/_sim/events");
        var entry = events["data"]!.AsArray().First(e => e!["type"]!.GetValue<string>() == "customer.created")!;
        var attempts = entry["attempts"]!.AsArray();
        Assert.That(attempts, Has.Count.EqualTo(2));
        Assert.That(attempts[0]!["status"]!.GetValue<int>(), Is.EqualTo(500));
        Assert.That(attempts[1]!["status"]!.GetValue<int>(), Is.EqualTo(200));
        Assert.That(entry["delivered"]!.GetValue<bool>(), Is.True);
        Assert.That(customer.Id, Does.StartWith("cus_"));
    }

    [Test]
    public async Task Should_keep_undelivered_events_listable_for_reconciliation()
    {
        await PostJson("/_sim/config", new JsonObject { ["deliverWebhooks"] = false });
        var customer = await CreateCustomer();
        await Task.Delay(200);
        Assert.That(SimulatorHost.Webhooks, Is.Empty);

        var events = new EventService(Stripe);
        var missed = await events.ListAsync(new EventListOptions { DeliverySuccess = false, Type = "customer.created" });
        Assert.That(missed.Data, Has.Count.EqualTo(1));
        Assert.That(((Customer)missed.Data[0].Data.Object).Id, Is.EqualTo(customer.Id));
        var byTime = await events.ListAsync(new EventListOptions { Created = new DateRangeOptions { GreaterThanOrEqual = DateTime.UtcNow.AddHours(-1) } });
        Assert.That(byTime.Data.Select(e => e.Id), Does.Contain(missed.Data[0].Id));
        var one = await events.GetAsync(missed.Data[0].Id);
        Assert.That(one.Type, Is.EqualTo("customer.created"));

        await PostJson("/_sim/config", new JsonObject { ["deliverWebhooks"] = true });
        await PostJson($"/_sim/events/{one.Id}/redeliver", new JsonObject());
        var received = await WaitForWebhooks(w => w.Count == 1);
        Assert.That(received[0].Json["id"]!.GetValue<string>(), Is.EqualTo(one.Id));
        var delivered = await events.ListAsync(new EventListOptions { DeliverySuccess = true });
        Assert.That(delivered.Data.Select(e => e.Id), Does.Contain(one.Id));
    }

    [Test]
    public async Task Should_page_events_newest_first()
    {
        for (var i = 0; i < 5; i++)
        {
            await CreateCustomer($"u{i}");
        }
        var events = new EventService(Stripe);
        var first = await events.ListAsync(new EventListOptions { Limit = 2 });
        Assert.That(first.HasMore, Is.True);
        Assert.That(((Customer)first.Data[0].Data.Object).Metadata["userId"], Is.EqualTo("u4"));
        var second = await events.ListAsync(new EventListOptions { Limit = 2, StartingAfter = first.Data[1].Id });
        Assert.That(((Customer)second.Data[0].Data.Object).Metadata["userId"], Is.EqualTo("u2"));
        var back = await events.ListAsync(new EventListOptions { Limit = 2, EndingBefore = second.Data[0].Id });
        Assert.That(back.Data.Select(e => e.Id), Is.EqualTo(first.Data.Select(e => e.Id)));
        var typed = await events.ListAsync(new EventListOptions { Types = ["customer.*"] });
        Assert.That(typed.Data, Has.Count.EqualTo(5));
    }
}
