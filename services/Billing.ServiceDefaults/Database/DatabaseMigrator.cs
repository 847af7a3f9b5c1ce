using System.Reflection;
using System.Text.RegularExpressions;
using DbUp;
using DbUp.Engine;
using DbUp.Engine.Output;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Billing.ServiceDefaults.Database;

/// <summary>
/// Forward-only, numbered SQL scripts embedded in an assembly (<c>…Migrations.NNNN_name.sql</c>), applied by DbUp in
/// one transaction each, under a PostgreSQL advisory lock so that replicas starting together apply them once.
/// The platform's own scripts (outbox, inbox) run first, then the service's.
/// </summary>
public static partial class DatabaseMigrator
{
    private const long AdvisoryLockKey = 0x42_494C_4C49_4E47; // "BILLING"
    private const string JournalTable = "schema_versions";

    /// <summary>The migration scripts of an assembly, in the order they run: file name number ascending.</summary>
    public static IReadOnlyList<(int Number, string ResourceName)> ScriptsIn(Assembly assembly) =>
        assembly.GetManifestResourceNames()
            .Select(name => (Match: ScriptName().Match(name), Name: name))
            .Where(x => x.Match.Success)
            .Select(x => (int.Parse(x.Match.Groups["n"].Value, System.Globalization.CultureInfo.InvariantCulture), x.Name))
            .OrderBy(x => x.Item1)
            .ToList();

    /// <summary>Creates the database if needed and applies every pending script. Returns the names of the scripts it ran.</summary>
    public static async Task<IReadOnlyList<string>> MigrateAsync(
        string connectionString, Assembly serviceAssembly, ILogger logger, CancellationToken cancellationToken = default)
    {
        await EnsureDatabaseAsync(connectionString, cancellationToken);

        // One migrator at a time across replicas: a transaction-scoped lock held by an open transaction on a connection of
        // its own (the scripts run on other connections). Transaction-scoped, so it also holds behind a pooler in
        // transaction mode, where a session lock could stay on a server connection someone else gets next.
        await using var lockConnection = new NpgsqlConnection(connectionString);
        await lockConnection.OpenAsync(cancellationToken);
        await using var lockTransaction = await lockConnection.BeginTransactionAsync(cancellationToken);
        await using (var take = new NpgsqlCommand("SELECT pg_advisory_xact_lock(@key)", lockConnection, lockTransaction))
        {
            take.Parameters.AddWithValue("key", AdvisoryLockKey);
            await take.ExecuteNonQueryAsync(cancellationToken);
        }

        var platformAssembly = typeof(DatabaseMigrator).Assembly;
        var scripts = Load(platformAssembly, runGroupOrder: 0).ToList();
        if (serviceAssembly != platformAssembly)
        {
            scripts.AddRange(Load(serviceAssembly, runGroupOrder: 1));
        }
        var upgrader = DeployChanges.To.PostgresqlDatabase(connectionString)
            .WithScripts(scripts)
            .WithTransactionPerScript()
            .JournalToPostgresqlTable("public", JournalTable)
            .LogTo(new DbUpLog(logger))
            .Build();

        var result = upgrader.PerformUpgrade();
        if (!result.Successful)
        {
            throw new InvalidOperationException(
                $"Migration {result.ErrorScript?.Name ?? "?"} failed: {result.Error?.Message}", result.Error);
        }

        var ran = result.Scripts.Select(s => s.Name).ToList();
        logger.LogInformation("Database migrated: {Count} script(s) applied", ran.Count);
        return ran; // the lock goes with the transaction when it is disposed (rolled back: it changed nothing)
    }

    private static IEnumerable<SqlScript> Load(Assembly assembly, int runGroupOrder)
    {
        foreach (var (number, resourceName) in ScriptsIn(assembly))
        {
            using var stream = assembly.GetManifestResourceStream(resourceName)!;
            using var reader = new StreamReader(stream);
            // The journal key is the assembly plus the file name, so moving a folder never re-runs a script.
            var fileName = resourceName[(resourceName.LastIndexOf(".Migrations.", StringComparison.Ordinal) + ".Migrations.".Length)..];
            var name = $"{assembly.GetName().Name}/{fileName}";
            yield return new SqlScript(name, reader.ReadToEnd(), new SqlScriptOptions { RunGroupOrder = runGroupOrder });
            _ = number;
        }
    }

    private static async Task EnsureDatabaseAsync(string connectionString, CancellationToken cancellationToken)
    {
        var target = new NpgsqlConnectionStringBuilder(connectionString);
        var database = target.Database ?? throw new InvalidOperationException("The connection string names no Database.");
        var admin = new NpgsqlConnectionStringBuilder(connectionString) { Database = "postgres", Pooling = false };
        await using var connection = new NpgsqlConnection(admin.ConnectionString);
        await connection.OpenAsync(cancellationToken);
        await using var exists = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = @name", connection);
        exists.Parameters.AddWithValue("name", database);
        if (await exists.ExecuteScalarAsync(cancellationToken) is not null)
        {
            return;
        }

        try
        {
            var quoted = "\"" + database.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
            await using var create = new NpgsqlCommand($"CREATE DATABASE {quoted}", connection);
            await create.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (PostgresException ex) when (ex.SqlState is PostgresErrorCodes.DuplicateDatabase or PostgresErrorCodes.UniqueViolation)
        {
            // Another replica created it first.
        }
    }

    [GeneratedRegex(@"\.Migrations\.(?<n>\d{4})_[a-z0-9_]+\.sql$")]
    private static partial Regex ScriptName();

    private sealed class DbUpLog(ILogger logger) : IUpgradeLog
    {
        public void LogTrace(string format, params object[] args) => logger.LogTrace(format, args);
        public void LogDebug(string format, params object[] args) => logger.LogDebug(format, args);
        public void LogInformation(string format, params object[] args) => logger.LogInformation(format, args);
        public void LogWarning(string format, params object[] args) => logger.LogWarning(format, args);
        public void LogError(string format, params object[] args) => logger.LogError(format, args);
        public void LogError(Exception ex, string format, params object[] args) => logger.LogError(ex, format, args);
    }
}
