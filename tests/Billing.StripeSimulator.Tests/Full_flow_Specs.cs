using Stripe;

namespace Billing.StripeSimulator.Tests;

public sealed class A_customer_from_checkout_to_refund : SimulatorSpec
{
    private static List<Event> Verified(List<ReceivedWebhook> received) =>
        received.Select(w => EventUtility.ConstructEvent(w.Body, w.Signature, SimulatorHost.Secret)).ToList();

    [Test]
    public async Task Should_see_every_step_as_signed_webhooks()
    {
        await CreatePrice("pro_monthly", 500);
        var price = (await new PriceService(Stripe).ListAsync(new PriceListOptions { LookupKeys = ["pro_monthly"] })).Data.Single();
        var customer = await CreateCustomer();
        var session = await CreateSubscriptionCheckout(price, customer.Id);
        using (var response = await Pay(session.Id))
        {
            Assert.That((int)response.StatusCode, Is.EqualTo(303));
        }
        var events = Verified(await WaitForWebhooks(w => w.Any(x => x.Type == "checkout.session.completed")));
        var completed = (Stripe.Checkout.Session)events.Single(e => e.Type == "checkout.session.completed").Data.Object;
        var sub = await new SubscriptionService(Stripe).GetAsync(completed.SubscriptionId);
        var firstCharge = events.Select(e => e.Data.Object).OfType<Charge>().Single();

        SimulatorHost.Webhooks.Clear();
        await AdvanceTo(new DateTimeOffset(sub.Items.Data[0].CurrentPeriodEnd).ToUnixTimeSeconds() + 10);
        events = Verified(await WaitForWebhooks(w => w.Any(x => x.Type == "customer.subscription.updated")));
        var renewal = (Invoice)events.First(e => e.Type == "invoice.paid").Data.Object;
        Assert.That(renewal.BillingReason, Is.EqualTo("subscription_cycle"));
        var updated = events.Single(e => e.Type == "customer.subscription.updated");
        Assert.That(((Subscription)updated.Data.Object).Items.Data[0].CurrentPeriodStart, Is.EqualTo(sub.Items.Data[0].CurrentPeriodEnd));
        Assert.That(updated.Data.PreviousAttributes, Is.Not.Null);

        await PostJson($"/_sim/customers/{customer.Id}/card", new() { ["card"] = "4000000000000341" });
        sub = await new SubscriptionService(Stripe).GetAsync(sub.Id);
        SimulatorHost.Webhooks.Clear();
        await AdvanceTo(new DateTimeOffset(sub.Items.Data[0].CurrentPeriodEnd).ToUnixTimeSeconds() + 10);
        events = Verified(await WaitForWebhooks(w => w.Any(x => x.Type == "customer.subscription.updated")));
        var failed = (Invoice)events.Single(e => e.Type == "invoice.payment_failed").Data.Object;
        Assert.That(failed.AttemptCount, Is.EqualTo(1));
        Assert.That(failed.NextPaymentAttempt, Is.Not.Null);
        Assert.That(((Subscription)events.Single(e => e.Type == "customer.subscription.updated").Data.Object).Status, Is.EqualTo("past_due"));

        SimulatorHost.Webhooks.Clear();
        await new RefundService(Stripe).CreateAsync(new RefundCreateOptions { PaymentIntent = firstCharge.PaymentIntentId });
        events = Verified(await WaitForWebhooks(w => w.Any(x => x.Type == "refund.created")));
        var refunded = (Charge)events.Single(e => e.Type == "charge.refunded").Data.Object;
        Assert.That(refunded.Id, Is.EqualTo(firstCharge.Id));
        Assert.That(refunded.Refunded, Is.True);
        Assert.That(refunded.AmountRefunded, Is.EqualTo(500));
    }
}
