using System.Net;
using Microsoft.Extensions.DependencyInjection;

namespace Billing.Usage.Tests;

/// <summary>
/// A group-committed batch is one statement in one transaction: when one spend in it fails inside PostgreSQL, the whole
/// batch rolls back and each spend is retried on its own. The neighbours must be answered and counted exactly once.
/// </summary>
[TestFixture]
[NonParallelizable]
public class When_a_batch_fails_in_the_database
{
    private static UsageHost Host => Hosts.Default;

    [Test]
    public async Task Its_other_spends_are_retried_alone_and_counted_once()
    {
        var poison = "u-poison-" + Guid.NewGuid().ToString("N")[..8];
        var users = Enumerable.Range(0, 24).Select(_ => UsageHost.NewUser()).ToList();
        await Host.ApplyAsync(UsageHost.Activated(poison));
        foreach (var user in users)
        {
            await Host.ApplyAsync(UsageHost.Activated(user));
        }
        // Only this user's spend fails, inside the database, after the validation that would have refused it up front.
        var trigger = "tr_poison_" + poison[9..];
        await Host.ScalarAsync($"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'poisoned spend'; END $$;
            CREATE TRIGGER {trigger} BEFORE INSERT ON consumptions FOR EACH ROW WHEN (NEW.user_id = '{poison}') EXECUTE FUNCTION {trigger}();
            SELECT 0::bigint
            """);
        var writer = Host.Services.GetRequiredService<Billing.Usage.Api.Spending.SpendWriter>();
        var failedBefore = writer.FailedBatches;
        try
        {
            for (var round = 0; round < 3; round++)
            {
                var spends = users.Select(u => Host.ConsumeAsync(u, UsageHost.NewKey())).Append(Host.ConsumeAsync(poison, UsageHost.NewKey()));
                var answers = await Task.WhenAll(spends);
                Assert.That(answers.Take(users.Count).Select(a => a.Status), Is.All.EqualTo(HttpStatusCode.OK));
                Assert.That(answers[^1].Status, Is.EqualTo(HttpStatusCode.InternalServerError));
            }
        }
        finally
        {
            await Host.ScalarAsync($"DROP TRIGGER {trigger} ON consumptions; DROP FUNCTION {trigger}(); SELECT 0::bigint");
        }

        Assert.That(writer.FailedBatches, Is.GreaterThan(failedBefore), "the poisoned spend shared a batch with others at least once");
        foreach (var user in users)
        {
            Assert.That((await Host.MeterAsync(user)).GetProperty("used").GetInt64(), Is.EqualTo(3), user);
        }
        Assert.That((await Host.MeterAsync(poison)).GetProperty("used").GetInt64(), Is.Zero, "the failed spend left nothing behind");
        Assert.That(await Host.ScalarAsync("SELECT count(*) FROM consumptions WHERE user_id = ANY(@users)", new { users = users.ToArray() }),
            Is.EqualTo(users.Count * 3));
    }
}
