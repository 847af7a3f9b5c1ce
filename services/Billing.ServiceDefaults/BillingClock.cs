using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Billing.ServiceDefaults;

/// <summary>
/// The time every Billing decision uses (windows, grace periods, expiries). In production it is the system clock.
/// In local runs against the Stripe simulator it follows the simulator's clock (<c>BILLING_CLOCK_URL</c>, e.g.
/// <c>http://127.0.0.1:12111/_sim/clock</c>), so that advancing simulated time moves Billing's windows too — the way
/// a Stripe test clock moves a customer's subscriptions.
/// </summary>
public sealed class BillingClock : TimeProvider
{
    private long _offsetTicks;

    /// <summary>How far the followed clock is ahead of the system clock.</summary>
    public TimeSpan Offset
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _offsetTicks));
        internal set => Interlocked.Exchange(ref _offsetTicks, value.Ticks);
    }

    /// <inheritdoc />
    public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + Offset;

    internal static void AddBillingClock(IHostApplicationBuilder builder)
    {
        var clock = new BillingClock();
        builder.Services.AddSingleton(clock);
        builder.Services.AddSingleton<TimeProvider>(clock);
        if (builder.Configuration["BILLING_CLOCK_URL"] is { Length: > 0 } url)
        {
            builder.Services.AddHostedService(sp => new SimulatedClockFollower(clock, new Uri(url), sp.GetRequiredService<ILogger<BillingClock>>()));
        }
    }
}

/// <summary>Polls a simulated clock (<c>{"now": unixSeconds}</c>) and keeps <see cref="BillingClock.Offset"/> current.</summary>
internal sealed class SimulatedClockFollower(BillingClock clock, Uri url, ILogger logger) : BackgroundService
{
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await PollOnceAsync(cancellationToken);
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            await PollOnceAsync(stoppingToken);
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(200), stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>
    /// The offset to follow, in whole seconds, never making our clock read earlier than the followed one: the simulator
    /// stamps objects with whole unix seconds (<c>floor(wall) + offset</c>), so with its exact <c>offset</c> our
    /// <c>wall + offset</c> is never behind a subscription's start it has just set. (Deriving the offset from
    /// <c>now</c> alone put our clock up to a second behind and moved it back and forth at every poll.) A clock that
    /// answers only <c>now</c>: the offset is rounded up to a whole second, and kept unless it moves forward or by
    /// more than a second (rounding and latency move it by one).
    /// </summary>
    internal static TimeSpan NextOffset(TimeSpan current, JsonElement answer, DateTimeOffset systemNow)
    {
        if (answer.TryGetProperty("offset", out var exact) && exact.ValueKind == JsonValueKind.Number)
        {
            return TimeSpan.FromSeconds(exact.GetInt64());
        }
        var now = DateTimeOffset.FromUnixTimeSeconds(answer.GetProperty("now").GetInt64());
        var candidate = TimeSpan.FromSeconds(Math.Ceiling((now - systemNow).TotalSeconds));
        return candidate > current || candidate < current - TimeSpan.FromSeconds(1) ? candidate : current;
    }

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(2) };

    private async Task PollOnceAsync(CancellationToken cancellationToken)
    {
        try
        {
            var answer = await Http.GetFromJsonAsync<JsonElement>(url, cancellationToken);
            clock.Offset = NextOffset(clock.Offset, answer, TimeProvider.System.GetUtcNow());
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException or InvalidOperationException)
        {
            logger.LogDebug(ex, "The simulated clock at {Url} did not answer", url);
        }
    }
}
