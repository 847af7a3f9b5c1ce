using Billing.Catalog;
using Billing.Usage.Core.Subscribers;

namespace Billing.Usage.Tests;

[TestFixture]
public class Subscriber_transitions
{
    private static readonly BillingCatalog Catalog = CatalogLoader.Load(UsageHost.RepoCatalog);
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static SubscriptionChange Change(string status, long sequence, int minutes, string plan = "pro", string sub = "sub_1", bool ended = false) => new()
    {
        UserId = "u1",
        SubscriptionId = sub,
        PlanId = plan,
        Status = status,
        StartedAt = T0,
        PeriodStart = T0,
        PeriodEnd = T0.AddMonths(1),
        Sequence = sequence,
        OccurredAt = T0.AddMinutes(minutes),
        Ended = ended,
    };

    /// <summary>As the consumers do: a change applies only above its subscription's last sequence (usage_subscriptions).</summary>
    private static SubscriberState Apply(params SubscriptionChange[] changes)
    {
        var last = new Dictionary<string, long>();
        var state = SubscriberState.New("u1", Catalog);
        foreach (var change in changes)
        {
            if (last.GetValueOrDefault(change.SubscriptionId) >= change.Sequence)
            {
                continue;
            }
            last[change.SubscriptionId] = change.Sequence;
            state = SubscriberTransitions.Apply(state, change, Catalog);
        }
        return state;
    }

    [TestCase("trialing", SubscriberAccess.Full)]
    [TestCase("active", SubscriberAccess.Full)]
    [TestCase("past_due", SubscriberAccess.Full)]
    [TestCase("canceled", SubscriberAccess.None)]
    [TestCase("unpaid", SubscriberAccess.None)]
    [TestCase("paused", SubscriberAccess.None)]
    [TestCase("incomplete", SubscriberAccess.None)]
    [TestCase("incomplete_expired", SubscriberAccess.None)]
    public void A_status_gives_the_plans_access_or_the_free_plan(string status, SubscriberAccess access)
    {
        var state = Apply(Change("active", 1, 0), Change(status, 2, 1));
        Assert.That(state.Access, Is.EqualTo(access));
        Assert.That(state.EffectivePlan(Catalog).Id, Is.EqualTo(access == SubscriberAccess.None ? "free" : "pro"));
    }

    [Test]
    public void An_older_sequence_never_rolls_the_state_back()
    {
        var state = Apply(Change("active", 1, 0), Change("canceled", 3, 2), Change("active", 2, 1));
        Assert.That(state.Access, Is.EqualTo(SubscriberAccess.None));
        Assert.That(state.Sequence, Is.EqualTo(3));
    }

    [Test]
    public void Every_order_of_a_lifecycle_ends_in_the_same_state()
    {
        var events = new[] { Change("active", 1, 0), Change("past_due", 2, 1), Change("active", 3, 2), Change("canceled", 4, 3, ended: true) };
        var expected = Apply(events);
        foreach (var permutation in Permutations(events))
        {
            Assert.That(Apply(permutation.ToArray()) with { Sequence = 0 }, Is.EqualTo(expected with { Sequence = 0 }).Using<SubscriberState>(Same));
        }
    }

    private static bool Same(SubscriberState a, SubscriberState b) => a.Access == b.Access && a.PlanId == b.PlanId;

    [Test]
    public void A_suspension_refuses_and_a_later_active_restores()
    {
        var state = Apply(Change("active", 1, 0), Change("past_due", 2, 10));
        state = SubscriberTransitions.Suspend(state, "sub_1", T0.AddMinutes(20));
        Assert.That(state.Access, Is.EqualTo(SubscriberAccess.Suspended));
        state = SubscriberTransitions.Apply(state, Change("active", 3, 30), Catalog);
        Assert.That(state.Access, Is.EqualTo(SubscriberAccess.Full));
    }

    [Test]
    public void A_suspension_that_overtakes_the_past_due_event_still_holds()
    {
        var state = Apply(Change("active", 1, 0));
        state = SubscriberTransitions.Suspend(state, "sub_1", T0.AddMinutes(20));
        state = SubscriberTransitions.Apply(state, Change("past_due", 2, 10), Catalog);
        Assert.That(state.Access, Is.EqualTo(SubscriberAccess.Suspended));
    }

    [Test]
    public void The_end_of_an_old_subscription_does_not_end_the_new_one()
    {
        var state = Apply(Change("active", 1, 0, sub: "sub_new"), Change("canceled", 5, 1, sub: "sub_old", ended: true));
        Assert.That(state.Access, Is.EqualTo(SubscriberAccess.Full));
        Assert.That(state.SubscriptionId, Is.EqualTo("sub_new"));
    }

    [Test]
    public void A_renewal_only_moves_the_period_forward()
    {
        var state = Apply(Change("active", 1, 0));
        var renewed = SubscriberTransitions.Renew(state, "sub_1", T0.AddMonths(1), T0.AddMonths(2));
        Assert.That(renewed.PeriodEnd, Is.EqualTo(T0.AddMonths(2)));
        Assert.That(SubscriberTransitions.Renew(renewed, "sub_1", T0, T0.AddMonths(1)), Is.EqualTo(renewed));
    }

    [Test]
    public void A_status_change_seen_after_the_renewal_keeps_the_renewed_period()
    {
        var state = Apply(Change("active", 1, 0));
        var renewed = SubscriberTransitions.Renew(state, "sub_1", T0.AddMonths(1), T0.AddMonths(2));
        var next = SubscriberTransitions.Apply(renewed, Change("active", 2, 5), Catalog); // still names the first period
        Assert.That((next.PeriodStart, next.PeriodEnd), Is.EqualTo((T0.AddMonths(1), T0.AddMonths(2))));
    }

    private static IEnumerable<IEnumerable<T>> Permutations<T>(IReadOnlyList<T> items) =>
        items.Count <= 1 ? [items]
            : items.SelectMany((item, i) => Permutations(items.Where((_, j) => j != i).ToList()).Select(rest => rest.Prepend(item)));
}
