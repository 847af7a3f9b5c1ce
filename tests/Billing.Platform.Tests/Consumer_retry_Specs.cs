using System.Collections.Concurrent;
using System.Diagnostics;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Messaging;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Billing.Platform.Tests;

/// <summary>A message only these tests publish: its consumer cannot handle it until <see cref="ReadyAfter"/> has passed.</summary>
public sealed record RetryProbeHappened
{
    public required string Id { get; init; }
    public required TimeSpan ReadyAfter { get; init; }
    public bool Permanent { get; init; }
}

public sealed class RetryProbeConsumer : IConsumer<RetryProbeHappened>
{
    public static readonly ConcurrentDictionary<string, (Stopwatch Since, int Attempts, bool Handled)> Seen = new();

    public Task Consume(ConsumeContext<RetryProbeHappened> context)
    {
        var m = context.Message;
        var seen = Seen.AddOrUpdate(m.Id, _ => (Stopwatch.StartNew(), 1, false), (_, s) => (s.Since, s.Attempts + 1, false));
        if (m.Permanent)
        {
            throw new InvalidOperationException("this message can never be handled");
        }
        if (seen.Since.Elapsed < m.ReadyAfter)
        {
            throw new RetryLaterException("what this message needs is not there yet");
        }
        Seen[m.Id] = seen with { Handled = true };
        return Task.CompletedTask;
    }
}

/// <summary>
/// ARCHITECTURE.md: nothing is lost when a part is down. A message whose consumer needs something that is not there yet
/// (the database, a service, an earlier message) is tried again for minutes, not for the ~20 s of the quick retries
/// after which a message goes to its _error queue and waits for an operator.
/// </summary>
[TestFixture]
[NonParallelizable]
public class Consumer_retries
{
    private IHost _host = null!;

    [OneTimeSetUp]
    public async Task StartHost()
    {
        var cs = TestEnvironment.Database("retries");
        await DatabaseMigrator.MigrateAsync(cs, typeof(DatabaseMigrator).Assembly, NullLogger.Instance);
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        builder.Configuration["ConnectionStrings:Database"] = cs;
        builder.Configuration["RabbitMq:Host"] = TestEnvironment.RabbitHost;
        builder.Configuration["RabbitMq:Port"] = TestEnvironment.RabbitPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        builder.Configuration["RabbitMq:QueuePrefix"] = TestEnvironment.RunId + "-";
        builder.Configuration["RabbitMq:RetryLaterSeconds"] = string.Join(",", Enumerable.Repeat("1", 60));
        builder.AddBillingDatabase(typeof(DatabaseMigrator).Assembly);
        builder.AddBillingBus("retry-tests", bus => bus.AddConsumer<RetryProbeConsumer>());
        _host = builder.Build();
        await _host.StartAsync();
    }

    [OneTimeTearDown]
    public async Task StopHost()
    {
        await _host.StopAsync();
        _host.Dispose();
    }

    [Test]
    public void The_bus_sends_no_usage_telemetry_to_MassTransits_vendor()
    {
        var options = _host.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<UsageTelemetryOptions>>().Value;
        Assert.That(options.Enabled, Is.False);
    }

    [Test]
    public async Task A_message_that_must_wait_longer_than_the_quick_retries_is_handled_and_a_bug_still_goes_to_error()
    {
        var waiting = Guid.NewGuid().ToString("N");
        var broken = Guid.NewGuid().ToString("N");
        var bus = _host.Services.GetRequiredService<IBus>();
        await bus.Publish(new RetryProbeHappened { Id = waiting, ReadyAfter = TimeSpan.FromSeconds(25) });
        await bus.Publish(new RetryProbeHappened { Id = broken, ReadyAfter = TimeSpan.Zero, Permanent = true });

        await Wait.UntilAsync(() => Task.FromResult(RetryProbeConsumer.Seen.TryGetValue(waiting, out var s) && s.Handled), TimeSpan.FromSeconds(60),
            what: "the waiting message handled");
        Assert.That(RetryProbeConsumer.Seen[waiting].Attempts, Is.InRange(15, 30),
            "about one attempt a second (this test's interval) until it could be handled, not a burst of quick retries and then _error");
        // The quick retries of the broken one take about as long (their waits grow to 10 s): wait for the seventh attempt,
        // then longer than this test's retry-later interval (1 s), which would bring an eighth if a bug were retried too.
        await Wait.UntilAsync(() => Task.FromResult(RetryProbeConsumer.Seen[broken].Attempts >= 7), TimeSpan.FromSeconds(40),
            what: "the broken message's quick retries");
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.That(RetryProbeConsumer.Seen[broken].Attempts, Is.EqualTo(7),
            "a message that can never be handled: one attempt and six quick retries, then its _error queue, no long waits");
    }
}
