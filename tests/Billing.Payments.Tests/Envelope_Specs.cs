namespace Billing.Payments.Tests;

[TestFixture]
public class Reading_a_webhook_envelope
{
    private static string Event(string type, string obj) =>
        $$$"""{"id":"evt_1","object":"event","api_version":"2026-10-28.endive","created":1764000000,"livemode":false,"type":"{{{type}}}","data":{"object":{{{obj}}}}}""";

    [Test]
    public void A_subscriptions_events_are_ordered_on_the_subscription()
    {
        var (e, _) = EnvelopeReader.Read(Event("customer.subscription.updated", """{"id":"sub_1","object":"subscription"}"""));
        Assert.That((e!.Id, e.Type, e.ObjectId, e.OrderKey), Is.EqualTo(("evt_1", "customer.subscription.updated", "sub_1", "sub_1")));
        Assert.That(e.Created, Is.EqualTo(DateTimeOffset.FromUnixTimeSeconds(1764000000)));
    }

    [Test]
    public void An_invoice_is_ordered_on_its_subscription()
    {
        var (e, _) = EnvelopeReader.Read(Event("invoice.paid",
            """{"id":"in_1","object":"invoice","parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_9"}}}"""));
        Assert.That((e!.ObjectId, e.OrderKey), Is.EqualTo(("in_1", "sub_9")));
    }

    [Test]
    public void A_subscription_checkout_is_ordered_on_its_subscription_and_a_payment_checkout_on_itself()
    {
        Assert.That(EnvelopeReader.Read(Event("checkout.session.completed", """{"id":"cs_1","object":"checkout.session","subscription":"sub_3"}""")).Envelope!.OrderKey, Is.EqualTo("sub_3"));
        Assert.That(EnvelopeReader.Read(Event("checkout.session.completed", """{"id":"cs_2","object":"checkout.session","subscription":null}""")).Envelope!.OrderKey, Is.EqualTo("cs_2"));
    }

    [Test]
    public void A_refunded_charge_is_ordered_on_its_payment_intent()
    {
        Assert.That(EnvelopeReader.Read(Event("charge.refunded", """{"id":"ch_1","object":"charge","payment_intent":"pi_1"}""")).Envelope!.OrderKey, Is.EqualTo("pi_1"));
    }

    [TestCase("not json")]
    [TestCase("[]")]
    [TestCase("""{"id":"nope","type":"x","created":1,"data":{"object":{}}}""")]
    [TestCase("""{"id":"evt_1","created":1,"data":{"object":{}}}""")]
    [TestCase("""{"id":"evt_1","type":"x","created":"yesterday","data":{"object":{}}}""")]
    [TestCase("""{"id":"evt_1","type":"x","created":1,"data":{}}""")]
    public void Anything_else_is_refused_with_a_reason(string body)
    {
        var (e, error) = EnvelopeReader.Read(body);
        Assert.That(e, Is.Null);
        Assert.That(error, Is.Not.Empty);
    }

    [Test]
    public void Only_the_event_types_of_the_contract_are_handled()
    {
        Assert.That(StripeEventTypes.Handled, Does.Contain("invoice.paid").And.Contain("charge.refunded").And.Contain("customer.subscription.trial_will_end"));
        Assert.That(StripeEventTypes.Handled, Does.Not.Contain("customer.created").And.Not.Contain("invoice.payment_succeeded"));
    }
}
