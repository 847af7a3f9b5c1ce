using System.Net;
using Billing.Contracts;
using Stripe;

namespace Billing.Subscriptions.Tests.WithStripe;

/// <summary>A full refund ends access when the refunded payment pays for the current period, also through the credit a change left.</summary>
[TestFixture]
public class A_full_refund_of_a_yearly_payment
{
    private static SubscriptionsHost Host => Hosts.Subscriptions;

    [Test]
    public async Task After_an_upgrade_to_a_monthly_plan_paid_from_its_credit_ends_access()
    {
        // Business yearly, then Max monthly a few days in: Stripe starts a new monthly period and credits the unused year,
        // which pays the month (and more). Refunding the yearly payment takes that money back: access ends.
        var user = SubscriptionsHost.NewUser();
        var yearly = await Host.SubscribeAsync(user, "business", "year");
        await Hosts.AdvanceSimulatorAsync(yearly.Items.Data[0].CurrentPeriodStart.AddDays(3));
        var (status, body) = await Host.PostAsync(user, "/api/subscriptions/me/change", new { planId = "max", interval = "month" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("upgrade"));
        var monthly = await new SubscriptionService(Host.Stripe).GetAsync(yearly.Id);
        Assert.That(monthly.Items.Data[0].CurrentPeriodStart, Is.GreaterThan(yearly.Items.Data[0].CurrentPeriodStart), "a new period began");
        await SubscriptionsHost.SaveLocalAsync(user, "max", monthly, sequence: 2);

        await Host.PublishAndWaitAsync(new PaymentRefunded
        {
            UserId = user, PaymentId = yearly.LatestInvoiceId, Kind = "subscription", ChargeId = "ch_" + user, Amount = 20_000,
            AmountRefunded = 20_000, Currency = "usd", FullyRefunded = true, SubscriptionId = yearly.Id, OccurredAt = DateTimeOffset.UtcNow,
        });

        Assert.That((await new SubscriptionService(Host.Stripe).GetAsync(yearly.Id)).Status, Is.EqualTo("canceled"));
    }
}
