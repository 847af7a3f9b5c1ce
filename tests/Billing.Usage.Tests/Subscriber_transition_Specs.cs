using Billing.Catalog;
using Billing.Usage.Core.Subscribers;

namespace Billing.Usage.Tests;

[TestFixture]
public class Subscriber_transitions
{
    private static readonly BillingCatalog Catalog = CatalogLoader.Load(UsageHost.RepoCatalog);
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static SubscriptionChange Change(string status, long sequence, int minutes, string plan = "pro", string sub = "sub_1", bool ended = false,
        string? previous = null, int started = 0) => new()
    {
        UserId = "u1",
        SubscriptionId = sub,
        PlanId = plan,
        Status = status,
        PreviousStatus = previous,
        StartedAt = T0.AddMinutes(started),
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
        var renewed = SubscriberTransitions.Renew(state, "sub_1", T0.AddMonths(1), T0.AddMonths(2), T0.AddMonths(1));
        Assert.That(renewed.PeriodEnd, Is.EqualTo(T0.AddMonths(2)));
        Assert.That(SubscriberTransitions.Renew(renewed, "sub_1", T0, T0.AddMonths(1), T0.AddMonths(1).AddHours(1)), Is.EqualTo(renewed));
    }

    [Test]
    public void A_change_of_interval_that_resets_the_billing_cycle_moves_the_period_although_it_ends_earlier()
    {
        // Yearly, then changed to a monthly price five months in: Stripe starts a new period now, ending in a month.
        var yearly = Change("active", 1, 0) with { PeriodEnd = T0.AddYears(1) };
        var monthly = Change("active", 2, 5) with { PlanId = "max", PeriodStart = T0.AddMonths(5), PeriodEnd = T0.AddMonths(6) };
        var changed = Apply(yearly, monthly);
        Assert.That((changed.PeriodStart, changed.PeriodEnd), Is.EqualTo((T0.AddMonths(5), T0.AddMonths(6))));

        // Its invoice seen first does the same; and the next month's renewal moves it on.
        var renewedFirst = SubscriberTransitions.Renew(Apply(yearly), "sub_1", T0.AddMonths(5), T0.AddMonths(6), T0.AddMonths(5));
        Assert.That((renewedFirst.PeriodStart, renewedFirst.PeriodEnd), Is.EqualTo((T0.AddMonths(5), T0.AddMonths(6))));
        var next = SubscriberTransitions.Renew(changed, "sub_1", T0.AddMonths(6), T0.AddMonths(7), T0.AddMonths(6));
        Assert.That((next.PeriodStart, next.PeriodEnd), Is.EqualTo((T0.AddMonths(6), T0.AddMonths(7))));
    }

    [Test]
    public void A_proration_within_the_period_does_not_move_it()
    {
        // An upgrade at the same interval: its invoice's lines run from the change to the period's end.
        var state = Apply(Change("active", 1, 0));
        var paid = SubscriberTransitions.Renew(state, "sub_1", T0.AddDays(10), T0.AddMonths(1), T0.AddDays(10));
        Assert.That((paid.PeriodStart, paid.PeriodEnd), Is.EqualTo((T0, T0.AddMonths(1))));
    }

    [Test]
    public void The_free_invoice_of_a_shortened_trial_does_not_move_the_period_in_either_order()
    {
        // A 14-day trial; two days in, an upgrade to a plan with a 7-day trial ends it on day 7. Stripe bills the new price
        // at $0 from now to the new trial end (billing reason subscription_update), and the update says the trial's period
        // is [start, day 7]. Moved to the invoice's [day 2, day 7] even for a moment, a `period` window would start over.
        var trial = Change("trialing", 1, 0) with { PeriodEnd = T0.AddDays(14) };
        var shortened = Change("trialing", 2, 2 * 24 * 60) with { PlanId = "max", PeriodEnd = T0.AddDays(7) };
        SubscriberState Paid(SubscriberState s) =>
            SubscriberTransitions.Renew(s, "sub_1", T0.AddDays(2), T0.AddDays(7), T0.AddDays(2), "subscription_update", 0);

        var invoiceFirst = Paid(Apply(trial));
        Assert.That((invoiceFirst.PeriodStart, invoiceFirst.PeriodEnd), Is.EqualTo((T0, T0.AddDays(14))), "the invoice alone moves nothing");
        var then = SubscriberTransitions.Apply(invoiceFirst, shortened, Catalog);
        var updateFirst = Paid(Apply(trial, shortened));
        Assert.That((then.PeriodStart, then.PeriodEnd), Is.EqualTo((T0, T0.AddDays(7))));
        Assert.That((updateFirst.PeriodStart, updateFirst.PeriodEnd), Is.EqualTo((T0, T0.AddDays(7))));

        // An upgrade that ends the trial now is charged, and that invoice does start the new period.
        var ended = SubscriberTransitions.Renew(Apply(trial), "sub_1", T0.AddDays(2), T0.AddDays(2).AddMonths(1), T0.AddDays(2), "subscription_update", 2000);
        Assert.That((ended.PeriodStart, ended.PeriodEnd), Is.EqualTo((T0.AddDays(2), T0.AddDays(2).AddMonths(1))));
    }

    [Test]
    public void A_status_change_seen_after_the_renewal_keeps_the_renewed_period()
    {
        var state = Apply(Change("active", 1, 0));
        var renewed = SubscriberTransitions.Renew(state, "sub_1", T0.AddMonths(1), T0.AddMonths(2), T0.AddMonths(1));
        var next = SubscriberTransitions.Apply(renewed, Change("active", 2, 5), Catalog); // still names the first period
        Assert.That((next.PeriodStart, next.PeriodEnd), Is.EqualTo((T0.AddMonths(1), T0.AddMonths(2))));
    }

    [Test]
    public void A_payment_made_before_the_grace_ended_is_not_undone_by_a_suspension_decided_a_moment_later()
    {
        // Past due at minute 10, paid at minute 59 (Stripe's time); Subscriptions had not seen the payment yet when the
        // grace ended at minute 60 and suspended the episode that began at minute 10.
        var state = Apply(Change("active", 1, 0), Change("past_due", 2, 10), Change("active", 3, 59));
        Assert.That(SubscriberTransitions.Suspend(state, "sub_1", T0.AddMinutes(10)).Access, Is.EqualTo(SubscriberAccess.Full));

        var suspendedFirst = SubscriberTransitions.Suspend(Apply(Change("active", 1, 0), Change("past_due", 2, 10)), "sub_1", T0.AddMinutes(10));
        Assert.That(suspendedFirst.Access, Is.EqualTo(SubscriberAccess.Suspended));
        Assert.That(SubscriberTransitions.Apply(suspendedFirst, Change("active", 3, 59), Catalog).Access, Is.EqualTo(SubscriberAccess.Full));
    }

    [Test]
    public void A_suspension_that_arrives_after_the_payment_does_not_wait_for_the_next_past_due_period()
    {
        // The suspension of the episode that began at minute 10 arrives after the payment at minute 59 (two outboxes, no
        // order between them); a month later the next renewal fails: its grace starts then, with full access.
        var state = Apply(Change("active", 1, 0), Change("past_due", 2, 10), Change("active", 3, 59));
        var late = SubscriberTransitions.Suspend(state, "sub_1", T0.AddMinutes(10));
        Assert.That(late.SuspendedAt, Is.Null);
        var nextFailure = SubscriberTransitions.Apply(late, Change("past_due", 4, 60 * 24 * 31), Catalog);
        Assert.That(nextFailure.Access, Is.EqualTo(SubscriberAccess.Full));

        // A state stored with such a suspension (before this was fixed) mends at the next change.
        var stored = state with { SuspendedAt = T0.AddMinutes(10) };
        Assert.That(SubscriberTransitions.Apply(stored, Change("past_due", 4, 60 * 24 * 31), Catalog).Access, Is.EqualTo(SubscriberAccess.Full));

        // In every order of the episode's events (null: the suspension), the next failure a month later starts with full access.
        var episode = new SubscriptionChange?[] { Change("active", 1, 0), Change("past_due", 2, 10), Change("active", 3, 59), null };
        foreach (var permutation in Permutations(episode))
        {
            var s = SubscriberState.New("u1", Catalog);
            foreach (var e in permutation)
            {
                s = e is null ? SubscriberTransitions.Suspend(s, "sub_1", T0.AddMinutes(10)) : SubscriberTransitions.Apply(s, e, Catalog);
            }
            Assert.That(s.Access, Is.EqualTo(SubscriberAccess.Full), string.Join(", ", permutation.Select(e => e?.Status ?? "suspended")));
            Assert.That(SubscriberTransitions.Apply(s, Change("past_due", 4, 60 * 24 * 31), Catalog).Access, Is.EqualTo(SubscriberAccess.Full),
                string.Join(", ", permutation.Select(e => e?.Status ?? "suspended")));
        }
    }

    [Test]
    public void The_next_past_due_episode_has_its_grace_whatever_the_order_of_the_first_episodes_events()
    {
        // Episode 1: past due at minute 10, suspended (grace over), paid at minute 59. A month later the renewal fails:
        // episode 2 (its update says the subscription was active until then). In every order — also when episode 2's
        // past_due arrives before episode 1's payment, which its higher sequence then makes too old to apply — the user
        // has the plan's access during episode 2's grace; its own suspension still suspends, and a payment lifts that.
        var month = 60 * 24 * 31;
        var events = new SubscriptionChange?[]
        {
            Change("active", 1, 0), Change("past_due", 2, 10, previous: "active"), null, Change("active", 3, 59, previous: "past_due"),
            Change("past_due", 4, month, previous: "active"),
        };
        foreach (var permutation in Permutations(events))
        {
            var order = string.Join(", ", permutation.Select(e => e is null ? "suspended" : $"{e.Status}:{e.Sequence}"));
            var s = SubscriberState.New("u1", Catalog);
            foreach (var e in permutation)
            {
                s = e is null ? SubscriberTransitions.Suspend(s, "sub_1", T0.AddMinutes(10), pastDueSequence: 2) : SubscriberTransitions.Apply(s, e, Catalog);
            }
            Assert.That((s.Status, s.Access), Is.EqualTo(("past_due", SubscriberAccess.Full)), order);
            var suspended = SubscriberTransitions.Suspend(s, "sub_1", T0.AddMinutes(month), pastDueSequence: 4);
            Assert.That(suspended.Access, Is.EqualTo(SubscriberAccess.Suspended), order);
            Assert.That(SubscriberTransitions.Apply(suspended, Change("active", 5, month + 30, previous: "past_due"), Catalog).Access,
                Is.EqualTo(SubscriberAccess.Full), order);
        }
    }

    [Test]
    public void A_suspension_applies_in_every_order_when_Stripe_times_do_not_follow_the_sequences()
    {
        // Payments stamps an update with the time of the Stripe event that made it re-read the subscription: an older event
        // processed later gives a higher sequence an earlier time. The episode began with sequence 2 (active before it);
        // Subscriptions, which saw sequence 3 first, counts it from 3's time and suspends episode 3 at minute 4.
        var events = new SubscriptionChange?[]
        {
            Change("past_due", 2, 5, previous: "active"), Change("past_due", 3, 4, previous: "past_due"), null,
        };
        foreach (var permutation in Permutations(events))
        {
            var s = Apply(Change("active", 1, 0));
            foreach (var e in permutation)
            {
                s = e is null ? SubscriberTransitions.Suspend(s, "sub_1", T0.AddMinutes(4), pastDueSequence: 3) : SubscriberTransitions.Apply(s, e, Catalog);
            }
            Assert.That(s.Access, Is.EqualTo(SubscriberAccess.Suspended),
                string.Join(", ", permutation.Select(e => e is null ? "suspended" : $"{e.Status}:{e.Sequence}")));
        }
    }

    [Test]
    public void A_late_event_of_the_old_subscription_does_not_replace_the_new_one()
    {
        // Usage was down; its queues (activated, updated, ended) drain in parallel after the restart.
        var state = Apply(Change("active", 1, 30, sub: "sub_new"), Change("active", 2, 5, sub: "sub_old"), Change("canceled", 3, 10, sub: "sub_old", ended: true));
        Assert.That((state.SubscriptionId, state.Access), Is.EqualTo(("sub_new", SubscriberAccess.Full)));
    }

    [Test]
    public void Every_order_of_two_consecutive_subscriptions_ends_on_the_new_one()
    {
        var events = new[]
        {
            Change("active", 1, 0, sub: "sub_old"), Change("active", 2, 5, sub: "sub_old"), Change("canceled", 3, 10, sub: "sub_old", ended: true),
            Change("active", 1, 30, sub: "sub_new"),
        };
        foreach (var permutation in Permutations(events))
        {
            var state = Apply(permutation.ToArray());
            Assert.That((state.SubscriptionId, state.Access), Is.EqualTo(("sub_new", SubscriberAccess.Full)),
                string.Join(", ", permutation.Select(e => $"{e.SubscriptionId}:{e.Status}:{e.Sequence}")));
        }
    }

    [Test]
    public void A_new_subscription_bought_before_the_old_one_ended_applies_in_any_order()
    {
        // Bought the new plan at minute 8, the old subscription ended at minute 10.
        var events = new[] { Change("active", 1, 0, sub: "sub_old"), Change("canceled", 2, 10, sub: "sub_old", ended: true), Change("active", 1, 8, sub: "sub_new") };
        foreach (var permutation in Permutations(events))
        {
            var state = Apply(permutation.ToArray());
            Assert.That((state.SubscriptionId, state.Access), Is.EqualTo(("sub_new", SubscriberAccess.Full)),
                string.Join(", ", permutation.Select(e => $"{e.SubscriptionId}:{e.Status}:{e.Sequence}")));
        }
    }

    [Test]
    public void An_update_of_an_older_live_subscription_does_not_replace_a_newer_one_in_any_order()
    {
        // Two live subscriptions for a while: the old one (started at 0) changes at minute 9, after the new one (started
        // at 8) — say its cancellation at the period end was set — and ends at minute 20. The newer one stays the user's.
        var events = new[]
        {
            Change("active", 1, 0, sub: "sub_old"), Change("active", 1, 8, plan: "max", sub: "sub_new", started: 8),
            Change("active", 2, 9, sub: "sub_old"), Change("canceled", 3, 20, sub: "sub_old", ended: true),
        };
        foreach (var permutation in Permutations(events))
        {
            var state = Apply(permutation.ToArray());
            Assert.That((state.SubscriptionId, state.PlanId, state.Access), Is.EqualTo(("sub_new", "max", SubscriberAccess.Full)),
                string.Join(", ", permutation.Select(e => $"{e.SubscriptionId}:{e.Status}:{e.Sequence}")));
        }
    }

    private static IEnumerable<IEnumerable<T>> Permutations<T>(IReadOnlyList<T> items) =>
        items.Count <= 1 ? [items]
            : items.SelectMany((item, i) => Permutations(items.Where((_, j) => j != i).ToList()).Select(rest => rest.Prepend(item)));
}
