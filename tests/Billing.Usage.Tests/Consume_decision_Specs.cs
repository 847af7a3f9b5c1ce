using Billing.Catalog;
using Billing.Usage.Core.Consuming;
using Billing.Usage.Core.Subscribers;

namespace Billing.Usage.Tests;

[TestFixture]
public class Consume_decisions
{
    private static readonly BillingCatalog Catalog = CatalogLoader.Load(UsageHost.TestCatalog);
    private static readonly DateTimeOffset Now = new(2026, 5, 10, 12, 0, 0, TimeSpan.Zero);

    private static SubscriberState On(string plan, SubscriberAccess access = SubscriberAccess.Full) => new()
    {
        UserId = "u1",
        PlanId = plan,
        SubscriptionId = "sub_1",
        Status = "active",
        Access = access,
        Anchor = Now.AddDays(-3),
        PeriodStart = Now.AddDays(-3),
        PeriodEnd = Now.AddDays(27),
    };

    [Test]
    public void A_member_of_an_unlimited_group_is_allowed_without_a_subscription()
    {
        var decision = ConsumePolicy.Decide(Catalog, SubscriberState.New("u1", Catalog), "ai.generation", ["ai-unlimited"], Now);
        Assert.That(decision, Is.EqualTo(new ConsumeDecision.AllowWithoutSpending("unlimited")));
    }

    [Test]
    public void Remembered_groups_count_when_the_caller_passes_none()
    {
        var state = SubscriberState.New("u1", Catalog) with { Groups = ["staff", "ai-unlimited"] };
        Assert.That(ConsumePolicy.Decide(Catalog, state, "ai.generation", null, Now), Is.TypeOf<ConsumeDecision.AllowWithoutSpending>());
    }

    [Test]
    public void Groups_the_caller_passes_are_the_users_groups_now_whatever_was_remembered()
    {
        // Taken out of the unlimited group since Billing last saw the user's own token.
        var state = SubscriberState.New("u1", Catalog) with { Groups = ["staff", "ai-unlimited"] };
        Assert.That(ConsumePolicy.Decide(Catalog, state, "ai.generation", ["staff"], Now), Is.TypeOf<ConsumeDecision.Refuse>());
        Assert.That(ConsumePolicy.Decide(Catalog, state, "ai.generation", [], Now), Is.TypeOf<ConsumeDecision.Refuse>());
    }

    [Test]
    public void A_free_user_with_no_allowance_needs_a_subscription()
    {
        var decision = ConsumePolicy.Decide(Catalog, SubscriberState.New("u1", Catalog), "ai.generation", [], Now);
        Assert.That(decision, Is.TypeOf<ConsumeDecision.Refuse>().With.Property("Code").EqualTo("no_subscription"));
    }

    [Test]
    public void A_free_allowance_above_zero_is_spent_from_its_window()
    {
        var decision = (ConsumeDecision.Spend)ConsumePolicy.Decide(Catalog, SubscriberState.New("u1", Catalog), "chat.message", [], Now);
        Assert.That(decision.Limit, Is.EqualTo(3));
        Assert.That(decision.Window.Start, Is.EqualTo(new DateTimeOffset(2026, 5, 10, 0, 0, 0, TimeSpan.Zero)));
    }

    [Test]
    public void A_suspended_subscriber_is_past_due()
    {
        var decision = ConsumePolicy.Decide(Catalog, On("pro", SubscriberAccess.Suspended), "ai.generation", [], Now);
        Assert.That(decision, Is.TypeOf<ConsumeDecision.Refuse>().With.Property("Code").EqualTo("payment_past_due"));
    }

    [Test]
    public void A_null_limit_spends_without_a_ceiling()
    {
        var decision = (ConsumeDecision.Spend)ConsumePolicy.Decide(Catalog, On("pro"), "chat.message", [], Now);
        Assert.That(decision.Limit, Is.Null);
    }

    [Test]
    public void An_upgrade_is_offered_only_when_a_dearer_plan_allows_more()
    {
        Assert.That(ConsumePolicy.CanUpgrade(Catalog, "pro", "ai.generation", 10), Is.True);
        Assert.That(ConsumePolicy.CanUpgrade(Catalog, "max", "ai.generation", 100), Is.False);
        Assert.That(ConsumePolicy.CanUpgrade(Catalog, "free", "chat.message", 3), Is.True);
    }

    [TestCase(199, 200, 250, true)]
    [TestCase(200, 201, 250, false)]
    [TestCase(150, 250, 250, true)]
    [TestCase(7, 8, 10, true)]
    [TestCase(8, 9, 10, false)]
    public void Quota_low_is_crossed_once_at_80_percent(long before, long after, long limit, bool crossed) =>
        Assert.That(QuotaThresholds.CrossedLow(before, after, limit), Is.EqualTo(crossed));

    [Test]
    public void Quota_is_exhausted_by_the_spend_that_uses_the_rest() =>
        Assert.Multiple(() =>
        {
            Assert.That(QuotaThresholds.Exhausted(249, 250, 250), Is.True);
            Assert.That(QuotaThresholds.Exhausted(248, 249, 250), Is.False);
        });
}
