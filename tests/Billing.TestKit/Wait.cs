using System.Diagnostics;
using System.Text;
using NUnit.Framework;

namespace Billing.TestKit;

/// <summary>Waiting for what happens asynchronously (RabbitMQ, background jobs) without fixed sleeps.</summary>
public static class Wait
{
    /// <summary>Polls <paramref name="condition"/> until it holds; fails the test after <paramref name="timeout"/> (20 s).</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan? timeout = null, TimeSpan? poll = null, string what = "the condition")
    {
        var watch = Stopwatch.StartNew();
        while (!await condition())
        {
            if (watch.Elapsed > (timeout ?? TimeSpan.FromSeconds(20)))
            {
                Assert.Fail($"{what} did not become true in time");
            }
            await Task.Delay(poll ?? TimeSpan.FromMilliseconds(100));
        }
    }

    /// <summary>A JSON request body exactly as written (for malformed-input tests too).</summary>
    public static StringContent Json(string raw) => new(raw, Encoding.UTF8, "application/json");
}
