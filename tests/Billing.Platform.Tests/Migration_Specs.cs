using System.Reflection;
using Billing.ServiceDefaults.Database;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Billing.Platform.Tests;

[TestFixture]
public class Database_migrations
{
    public static IEnumerable<string> Assemblies() =>
        ["Billing.ServiceDefaults", "Billing.Subscriptions.Api", "Billing.Payments.Api", "Billing.Usage.Api", "Billing.Wallet.Api"];

    [TestCaseSource(nameof(Assemblies))]
    public void Are_numbered_uniquely_and_contiguously_from_one(string assemblyName)
    {
        var numbers = DatabaseMigrator.ScriptsIn(Assembly.Load(assemblyName)).Select(s => s.Number).ToList();
        Assert.That(numbers, Is.EqualTo(Enumerable.Range(1, numbers.Count).ToList()),
            $"{assemblyName}: scripts must be 0001, 0002, … with no gap and no repeat");
    }

    [TestCaseSource(nameof(Assemblies))]
    public void Every_sql_resource_follows_the_naming_rule(string assemblyName)
    {
        var assembly = Assembly.Load(assemblyName);
        var sql = assembly.GetManifestResourceNames().Where(n => n.EndsWith(".sql", StringComparison.Ordinal)).ToList();
        Assert.That(DatabaseMigrator.ScriptsIn(assembly).Count, Is.EqualTo(sql.Count),
            "every embedded .sql is a migration named Migrations/NNNN_lower_snake_case.sql, or it would silently never run");
    }

    [TestCaseSource(nameof(Assemblies))]
    public async Task Apply_once_and_re_running_is_a_no_op(string assemblyName)
    {
        var cs = TestEnvironment.Database("mig_" + assemblyName.Replace("Billing.", "").Replace(".", "_"));
        var assembly = Assembly.Load(assemblyName);
        var first = await DatabaseMigrator.MigrateAsync(cs, assembly, NullLogger.Instance);
        var second = await DatabaseMigrator.MigrateAsync(cs, assembly, NullLogger.Instance);

        var expected = DatabaseMigrator.ScriptsIn(typeof(DatabaseMigrator).Assembly).Count
            + (assembly == typeof(DatabaseMigrator).Assembly ? 0 : DatabaseMigrator.ScriptsIn(assembly).Count);
        Assert.That(first, Has.Count.EqualTo(expected));
        Assert.That(second, Is.Empty);
        await using var connection = new NpgsqlConnection(cs);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('outbox','inbox')", connection);
        Assert.That(await command.ExecuteScalarAsync(), Is.EqualTo(2L));
    }

    [Test]
    public async Task Replicas_migrating_at_once_apply_each_script_once()
    {
        var cs = TestEnvironment.Database("mig_race");
        var runs = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ =>
            Task.Run(() => DatabaseMigrator.MigrateAsync(cs, typeof(DatabaseMigrator).Assembly, NullLogger.Instance))));
        Assert.That(runs.Sum(r => r.Count), Is.EqualTo(DatabaseMigrator.ScriptsIn(typeof(DatabaseMigrator).Assembly).Count));
    }
}
