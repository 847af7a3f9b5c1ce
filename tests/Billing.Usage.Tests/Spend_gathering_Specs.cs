using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.DependencyInjection;

namespace Billing.Usage.Tests;

/// <summary>
/// The group-commit writer waits a moment for consumes that are being decided right now, so that they share the batch.
/// It sleeps while it waits (no polling), so the wait must end by itself when such a consume never comes.
/// </summary>
[TestFixture]
[NonParallelizable]
public class Gathering_a_batch
{
    private static UsageHost Host => Hosts.Default;

    [Test]
    public async Task A_consume_that_said_it_was_coming_and_never_came_holds_the_others_only_for_a_moment()
    {
        var user = UsageHost.NewUser();
        await Host.ApplyAsync(UsageHost.Activated(user));
        await Host.ConsumeAsync(user, UsageHost.NewKey()); // warm: the subscriber is cached, the statement prepared
        var writer = Host.Services.GetRequiredService<Billing.Usage.Api.Spending.SpendWriter>();

        using (writer.Expect()) // a consume being decided that will not be queued while the ones below are
        {
            for (var i = 0; i < 5; i++)
            {
                var clock = Stopwatch.StartNew();
                var (status, _) = await Host.ConsumeAsync(user, UsageHost.NewKey()).WaitAsync(TimeSpan.FromSeconds(10));
                Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
                // The wait is 200 µs (at least a timer tick, ~1 ms, when nothing arrives); generous for a loaded machine.
                Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(1)), $"consume {i} waited for a consume that never came");
            }
        }

        Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(6));
        Assert.That(writer.Expected, Is.Zero);
    }
}
