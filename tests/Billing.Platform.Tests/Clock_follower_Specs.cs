using System.Text.Json;
using Billing.ServiceDefaults;

namespace Billing.Platform.Tests;

/// <summary>
/// Following the simulator's clock: our clock must never read earlier than the second the simulator stamps on what it
/// creates, or a subscription that has just started looks as if it starts in the future (the CI saw a spend counted in
/// the month before the subscription).
/// </summary>
public sealed class Clock_follower_Specs
{
    private static JsonElement Answer(string json) => JsonDocument.Parse(json).RootElement;

    [TestCase(0.0)]
    [TestCase(0.3)]
    [TestCase(0.999)]
    public void The_simulators_exact_offset_is_taken_as_it_is(double fraction)
    {
        var system = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000).AddSeconds(fraction);
        var offset = SimulatedClockFollower.NextOffset(TimeSpan.Zero, Answer("""{"now": 1802592000, "offset": 2592000}"""), system);

        Assert.That(offset, Is.EqualTo(TimeSpan.FromDays(30)));
        var simulatorStamp = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000 + 2_592_000);
        Assert.That(system + offset, Is.GreaterThanOrEqualTo(simulatorStamp));
    }

    [Test]
    public void A_clock_that_answers_only_now_is_rounded_up_and_never_puts_us_behind_it()
    {
        // Polled at .9 of a second: now is the whole second, 0.9 s "behind" the system clock plus the advance.
        var system = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000).AddSeconds(0.9);
        var offset = SimulatedClockFollower.NextOffset(TimeSpan.Zero, Answer("""{"now": 1800086400}"""), system);

        Assert.That(offset, Is.EqualTo(TimeSpan.FromDays(1)));
        Assert.That(system + offset, Is.GreaterThanOrEqualTo(DateTimeOffset.FromUnixTimeSeconds(1_800_086_400)));
    }

    [Test]
    public void Rounding_and_latency_do_not_move_the_clock_back_and_forth_between_polls()
    {
        var current = TimeSpan.FromDays(1);
        // The answer crossed a second boundary on its way: one second less than the truth.
        var system = DateTimeOffset.FromUnixTimeSeconds(1_800_000_001).AddSeconds(0.05);
        var offset = SimulatedClockFollower.NextOffset(current, Answer("""{"now": 1800086400}"""), system);

        Assert.That(offset, Is.EqualTo(current));
    }

    [Test]
    public void A_clock_set_back_is_followed()
    {
        var system = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000).AddSeconds(0.5);
        var offset = SimulatedClockFollower.NextOffset(TimeSpan.FromDays(1), Answer("""{"now": 1800000000}"""), system);

        Assert.That(offset, Is.EqualTo(TimeSpan.Zero));
    }
}
