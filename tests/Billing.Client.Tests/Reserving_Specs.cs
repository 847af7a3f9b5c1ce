namespace Billing.Client.Tests;

/// <summary>Streaming AI calls whose cost is known at the end: reserve, then commit what was used or give it back.</summary>
[TestFixture]
[NonParallelizable]
public class Reserving_through_the_client
{
    [Test]
    public async Task A_committed_reservation_spends_what_was_used_and_gives_back_the_rest()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        var billing = Stack.Client();

        await using (var hold = await billing.ReserveAsync(user, "ai.generation", 10, ttl: TimeSpan.FromMinutes(5)))
        {
            Assert.That(hold.Info.Remaining, Is.EqualTo(240), "the reservation counts against the window at once");
            var settled = await hold.CommitAsync(4);
            Assert.That((settled.Committed, settled.Released), Is.EqualTo((4L, 6L)));
        }

        Assert.That(await Stack.UsedAsync(user, "ai.generation"), Is.EqualTo(4));
    }

    [Test]
    public async Task A_reservation_disposed_without_a_commit_is_released()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        var billing = Stack.Client();

        try
        {
            await using var hold = await billing.ReserveAsync(user, "ai.generation", 25);
            Assert.That(await Stack.UsedAsync(user, "ai.generation"), Is.EqualTo(25));
            throw new InvalidOperationException("the model call failed");
        }
        catch (InvalidOperationException)
        {
            // what an AI backend's failed call looks like
        }

        Assert.That(await Stack.UsedAsync(user, "ai.generation"), Is.Zero);
    }

    [Test]
    public async Task A_reservation_larger_than_what_is_left_is_refused_with_QuotaExhaustedException()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        var billing = Stack.Client();

        var refused = Assert.ThrowsAsync<QuotaExhaustedException>(() => billing.ReserveAsync(user, "ai.generation", 251));

        Assert.That(refused!.Limit, Is.EqualTo(250));
        Assert.That(await Stack.UsedAsync(user, "ai.generation"), Is.Zero);
    }

    [Test]
    public async Task A_free_user_cannot_reserve()
    {
        var billing = Stack.Client();

        Assert.ThrowsAsync<NoSubscriptionException>(() => billing.ReserveAsync(Stack.NewUser(), "ai.generation", 1));
        await Task.CompletedTask;
    }

    [Test]
    public async Task Committing_more_than_was_reserved_is_refused_before_it_is_sent()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        await using var hold = await Stack.Client().ReserveAsync(user, "ai.generation", 2);

        Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => hold.CommitAsync(3));
        Assert.That(hold.IsSettled, Is.False);
    }

    [Test]
    public async Task A_commit_that_is_never_sent_leaves_the_reservation_to_be_released_when_disposed()
    {
        // The streaming call was aborted (HttpContext.RequestAborted) and the partial use is committed under the same,
        // already cancelled token: the commit is never sent, so the reservation must still go back when it is disposed.
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        var billing = Stack.Client();
        using var aborted = new CancellationTokenSource();
        await aborted.CancelAsync();

        await using (var hold = await billing.ReserveAsync(user, "ai.generation", 25))
        {
            Assert.CatchAsync<OperationCanceledException>(() => hold.CommitAsync(5, aborted.Token));
            Assert.That(hold.IsSettled, Is.False, "nothing was committed");
            Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => hold.CommitAsync(-1));
            Assert.That(hold.IsSettled, Is.False);
        }

        Assert.That(await Stack.UsedAsync(user, "ai.generation"), Is.Zero, "released at dispose, not held until it expires");
    }

    [Test]
    public async Task A_release_that_is_never_sent_is_tried_again_when_disposed()
    {
        var user = Stack.NewUser();
        await Stack.SubscribeAsync(user, "pro");
        using var aborted = new CancellationTokenSource();
        await aborted.CancelAsync();

        await using (var hold = await Stack.Client().ReserveAsync(user, "ai.generation", 25))
        {
            Assert.CatchAsync<OperationCanceledException>(() => hold.ReleaseAsync(aborted.Token));
            Assert.That(hold.IsSettled, Is.False);
        }

        Assert.That(await Stack.UsedAsync(user, "ai.generation"), Is.Zero);
    }
}
