using FsCheck.NUnit;

namespace Billing.Payments.Tests;

/// <summary>
/// ARCHITECTURE.md rule 3 as a property. Stripe's subscription moves through a lifecycle; each change emits a webhook;
/// webhooks are delivered late, repeated and in any order. Payments processes one subscription's webhooks one after
/// another and each time re-reads Stripe's *current* object; the messages it publishes then reach Subscriptions and
/// Usage through RabbitMQ, again repeated and in any order, and they apply a message only when its sequence is newer.
/// Whatever the order, every consumer ends on Stripe's final state.
/// </summary>
[TestFixture]
public class Any_order_of_Stripe_events
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 31, 10, 0, 0, TimeSpan.Zero);

    private static SubscriptionSnapshot State(string status, int period = 0, string plan = "pro", bool cancel = false, DateTimeOffset? ended = null) => new()
    {
        SubscriptionId = "sub_1", UserId = "u1", CustomerId = "cus_1", PlanId = plan, PriceId = "price_" + plan, Interval = "month", IntervalCount = 1,
        Status = status, CurrentPeriodStart = T0.AddMonths(period), CurrentPeriodEnd = T0.AddMonths(period + 1), CancelAtPeriodEnd = cancel,
        StartedAt = T0, EndedAt = ended,
    };

    /// <summary>The lifecycles of the subscription tests: checkout, renewals, a failed payment, a plan change, a cancellation.</summary>
    private static readonly SubscriptionSnapshot[][] Lifecycles =
    [
        [State("incomplete"), State("active"), State("active", 1), State("past_due", 1), State("active", 1), State("active", 2, "business"),
         State("active", 2, "business", cancel: true), State("canceled", 2, "business", cancel: true, ended: T0.AddMonths(3))],
        [State("trialing"), State("active"), State("active", 1, cancel: true), State("active", 1), State("active", 2), State("past_due", 2), State("unpaid", 2)],
        [State("active"), State("active", 1), State("active", 2), State("active", 3, "starter")],
        [State("active"), State("past_due", 1), State("past_due", 1), State("canceled", 1, ended: T0.AddMonths(1).AddDays(20))],
    ];

    private static int _orderings;

    [OneTimeTearDown]
    public void Report() => TestContext.Progress.WriteLine($"Event order property: {_orderings} delivery orderings tried.");

    [FsCheck.NUnit.Property(MaxTest = 400)]
    public bool End_in_the_same_state_as_in_order_delivery(int lifecycleSeed, int deliverySeed)
    {
        Interlocked.Increment(ref _orderings);
        var lifecycle = Lifecycles[Math.Abs(lifecycleSeed % Lifecycles.Length)];
        var random = new Random(deliverySeed);

        // Each change of Stripe's object emits one webhook; some are delivered twice.
        var webhooks = Enumerable.Range(0, lifecycle.Length).SelectMany(i => random.Next(4) == 0 ? new[] { i, i } : new[] { i }).ToList();
        // Delivery order: any permutation, but processing happens over time, so a webhook is processed no earlier than
        // the change that emitted it, and it reads whatever Stripe says at that moment.
        var processingTimes = webhooks.Select(i => random.Next(i, lifecycle.Length)).OrderBy(t => t).ToList();
        processingTimes[^1] = lifecycle.Length - 1; // the last change's webhook is eventually processed after it happened

        SubscriptionMirror? mirror = null;
        var published = new List<(long Sequence, SubscriptionSnapshot State, SubscriptionMessage Kind)>();
        foreach (var time in processingTimes)
        {
            var current = lifecycle[time]; // re-read from Stripe: its state now
            var messages = SubscriptionChanges.Decide(mirror, current);
            var sequence = mirror?.Sequence ?? 0;
            foreach (var kind in messages)
            {
                published.Add((++sequence, current, kind));
            }
            mirror = new SubscriptionMirror(current, (mirror?.Activated ?? false) || messages.Contains(SubscriptionMessage.Activated),
                (mirror?.Ended ?? false) || messages.Contains(SubscriptionMessage.Ended), sequence);
        }

        // RabbitMQ: any order, redeliveries; the consumer keeps the message with the highest sequence.
        var deliveries = published.Concat(published.Where(_ => random.Next(3) == 0)).OrderBy(_ => random.Next()).ToList();
        (long Sequence, SubscriptionSnapshot State)? consumer = null;
        foreach (var (sequence, state, _) in deliveries)
        {
            if (consumer is null || sequence > consumer.Value.Sequence)
            {
                consumer = (sequence, state);
            }
        }

        var final = lifecycle[^1];
        var expectedVisible = final.IsStarted || final.IsOver;
        return expectedVisible ? consumer?.State == final : consumer is null;
    }

    [Test]
    public void An_unchanged_state_publishes_nothing_and_an_ended_subscription_stays_ended()
    {
        var active = State("active");
        var mirror = new SubscriptionMirror(active, Activated: true, Ended: false, Sequence: 1);
        Assert.That(SubscriptionChanges.Decide(mirror, active), Is.Empty);
        Assert.That(SubscriptionChanges.Decide(mirror, active with { CancelAtPeriodEnd = true }), Is.EqualTo(new[] { SubscriptionMessage.Updated }));
        var ended = new SubscriptionMirror(State("canceled"), Activated: true, Ended: true, Sequence: 5);
        Assert.That(SubscriptionChanges.Decide(ended, active), Is.Empty);
    }

    [Test]
    public void Activation_waits_for_a_started_subscription()
    {
        Assert.That(SubscriptionChanges.Decide(null, State("incomplete")), Is.Empty);
        Assert.That(SubscriptionChanges.Decide(null, State("trialing")), Is.EqualTo(new[] { SubscriptionMessage.Activated }));
        Assert.That(SubscriptionChanges.Decide(null, State("canceled")), Is.EqualTo(new[] { SubscriptionMessage.Ended }));
    }
}
