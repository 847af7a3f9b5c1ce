using Billing.Catalog;
using Billing.Usage.Core.Consuming;
using Billing.Usage.Core.Meters;
using Billing.Usage.Core.Reservations;
using Billing.Usage.Core.Subscribers;

namespace Billing.Usage.Tests;

[TestFixture]
public class Overage_policy
{
    private static MeterAllowance Meter(string overage, string? eventName = null, long tokensPerUnit = 1) =>
        new() { Meter = "m", Limit = 5, Overage = overage, StripeMeterEventName = eventName, TokensPerUnit = tokensPerUnit };

    [Test]
    public void Each_overage_policy_leads_to_its_action()
    {
        Assert.That(ConsumePolicy.WhenExhausted(Meter("block")), Is.EqualTo(ExhaustedAction.Block));
        Assert.That(ConsumePolicy.WhenExhausted(Meter("tokens")), Is.EqualTo(ExhaustedAction.Tokens));
        Assert.That(ConsumePolicy.WhenExhausted(Meter("bill", "ev")), Is.EqualTo(ExhaustedAction.Bill));
        Assert.That(ConsumePolicy.WhenExhausted(Meter("bill")), Is.EqualTo(ExhaustedAction.Block), "no event name: nothing to bill with");
    }

    [Test]
    public void A_token_spend_costs_quantity_times_tokens_per_unit() =>
        Assert.That(ConsumePolicy.TokensFor(Meter("tokens", tokensPerUnit: 1500), 3), Is.EqualTo(4500));

    [TestCase(0, 3, 5, 3, 0)]
    [TestCase(4, 3, 5, 1, 2)]
    [TestCase(5, 3, 5, 0, 3)]
    [TestCase(9, 2, 5, 0, 2)]
    public void A_billed_spend_takes_the_window_first_and_the_rest_is_overage(long usedBefore, long quantity, long limit, long quota, long overage) =>
        Assert.That(ConsumePolicy.SplitBilled(usedBefore, quantity, limit), Is.EqualTo((quota, overage)));

    [Test]
    public void A_free_plan_that_pays_with_tokens_needs_no_subscription()
    {
        var catalog = new BillingCatalog
        {
            FreePlan = "free",
            Plans = [new Plan { Id = "free", Name = "Free", Meters = [new MeterAllowance { Meter = "api.credit", Limit = 0, Overage = "tokens" }] }],
        };
        var decision = ConsumePolicy.Decide(catalog, SubscriberState.New("u", catalog), "api.credit", [], DateTimeOffset.UtcNow);
        Assert.That(decision, Is.TypeOf<ConsumeDecision.Spend>());
    }

    [Test]
    public void Billed_overage_blocks_during_a_trial_and_while_past_due()
    {
        var catalog = new BillingCatalog
        {
            FreePlan = "free",
            Plans =
            [
                new Plan { Id = "free", Name = "Free" },
                new Plan
                {
                    Id = "pro", Name = "Pro", TrialDays = 14, Prices = [new Price { Interval = "month", Amount = 1500 }],
                    Meters = [new MeterAllowance { Meter = "chat.message", Limit = 5, Window = "day", Overage = "bill", StripeMeterEventName = "ev", OverageUnitAmount = 0.5m }],
                },
            ],
        };
        var paying = SubscriberState.New("u", catalog) with { PlanId = "pro", SubscriptionId = "sub_1", Status = "active", Access = SubscriberAccess.Full };
        ExhaustedAction After(SubscriberState state) =>
            ConsumePolicy.WhenExhausted(((ConsumeDecision.Spend)ConsumePolicy.Decide(catalog, state, "chat.message", [], DateTimeOffset.UtcNow)).Allowance);

        Assert.That(After(paying), Is.EqualTo(ExhaustedAction.Bill));
        Assert.That(After(paying with { Status = "trialing" }), Is.EqualTo(ExhaustedAction.Block), "no invoice to bill a trial's overage on");
        Assert.That(After(paying with { Status = "past_due" }), Is.EqualTo(ExhaustedAction.Block), "the card has just failed: the grace period keeps the allowance only");

        // The meters a page shows say the same, so it does not promise billed use the consume then refuses.
        (string, decimal?) Shown(SubscriberState state) =>
            MeterUsages.Describe(catalog, state, DateTimeOffset.UtcNow, (_, _) => 0).Select(m => (m.Overage, m.OverageUnitAmount)).Single();
        Assert.That(Shown(paying), Is.EqualTo(("bill", (decimal?)0.5m)));
        Assert.That(Shown(paying with { Status = "trialing" }), Is.EqualTo(("block", (decimal?)null)));
        Assert.That(Shown(paying with { Status = "past_due" }), Is.EqualTo(("block", (decimal?)null)));
    }

    [Test]
    public void A_reservation_lives_300_seconds_unless_asked_and_at_most_an_hour()
    {
        var now = new DateTimeOffset(2026, 1, 31, 23, 59, 0, TimeSpan.Zero);
        Assert.That(ReservationRules.ExpiresAt(now, null), Is.EqualTo(now.AddSeconds(300)));
        Assert.That(ReservationRules.IsValidTtl(3600), Is.True);
        Assert.That(ReservationRules.IsValidTtl(3601), Is.False);
        Assert.That(ReservationRules.IsValidTtl(0), Is.False);
    }
}
