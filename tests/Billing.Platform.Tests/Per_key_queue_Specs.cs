using Billing.ServiceDefaults;

namespace Billing.Platform.Tests;

[TestFixture]
public class A_per_key_queue
{
    [Test]
    public async Task Holds_one_key_at_a_time_never_another_key_and_forgets_keys_nobody_waits_for()
    {
        var queue = new PerKeyQueue();
        var first = await queue.EnterAsync("u1", TimeSpan.FromSeconds(1), CancellationToken.None);
        Assert.That(first, Is.Not.Null);

        Assert.That(await queue.EnterAsync("u1", TimeSpan.FromMilliseconds(50), CancellationToken.None), Is.Null, "the same key waits");
        using (var other = await queue.EnterAsync("u2", TimeSpan.FromMilliseconds(50), CancellationToken.None))
        {
            Assert.That(other, Is.Not.Null, "another key does not");
        }

        var waiting = queue.EnterAsync("u1", TimeSpan.FromSeconds(5), CancellationToken.None);
        first!.Dispose();
        first.Dispose(); // twice gives the turn on once
        using var second = await waiting;
        Assert.That(second, Is.Not.Null, "the turn passes on");
        Assert.That(await queue.EnterAsync("u1", TimeSpan.FromMilliseconds(50), CancellationToken.None), Is.Null, "and is held again");

        second!.Dispose();
        Assert.That(queue.Count, Is.Zero);
    }

    [Test]
    public void A_cancelled_wait_leaves_nothing_behind()
    {
        var queue = new PerKeyQueue();
        var held = queue.EnterAsync("u1", TimeSpan.FromSeconds(1), CancellationToken.None).Result;
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        Assert.That(async () => await queue.EnterAsync("u1", TimeSpan.FromSeconds(5), cancel.Token), Throws.InstanceOf<OperationCanceledException>());
        held!.Dispose();
        Assert.That(queue.Count, Is.Zero);
    }
}
