using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Billing.ServiceDefaults.Database;

/// <summary>One <see cref="NpgsqlDataSource"/> per service, its readiness check, and its migrations.</summary>
public static class DatabaseExtensions
{
    /// <summary>
    /// Registers the service's data source from <c>ConnectionStrings:Database</c> and remembers which assembly
    /// holds its numbered migration scripts (<c>Persistence/Migrations/NNNN_name.sql</c>, embedded).
    /// </summary>
    public static TBuilder AddBillingDatabase<TBuilder>(this TBuilder builder, Assembly migrationsAssembly)
        where TBuilder : IHostApplicationBuilder
    {
        DapperTypes.Register();
        var connectionString = builder.Configuration.GetConnectionString("Database");
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new InvalidOperationException(
                "ConnectionStrings:Database is not set (env ConnectionStrings__Database). deploy/billing sets it for local runs.");
        }

        var settings = new NpgsqlConnectionStringBuilder(connectionString);
        if (settings.MaxAutoPrepare == 0)
        {
            // The hot paths run the same few statements all day: let Npgsql prepare them once per connection.
            settings.MaxAutoPrepare = 32;
            settings.AutoPrepareMinUsages = 2;
        }
        var dataSourceBuilder = new NpgsqlDataSourceBuilder(settings.ConnectionString)
        {
            Name = builder.Environment.ApplicationName,
        };
        builder.Services.AddSingleton(dataSourceBuilder.Build());
        builder.Services.AddSingleton(new MigrationScripts(migrationsAssembly));
        builder.Services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database", tags: ["ready"]);
        return builder;
    }

    /// <summary>
    /// A small pool of its own on the service's database (<c>ConnectionStrings:Database</c>), of at most
    /// <paramref name="sizeSetting"/> connections (<paramref name="defaultSize"/>; 1–200): for requests that hold a lock
    /// while Stripe answers, so that a Stripe slowdown uses these up and never the main pool.
    /// </summary>
    public static NpgsqlDataSource OwnPool(IConfiguration configuration, string sizeSetting, int defaultSize) =>
        new NpgsqlDataSourceBuilder(new NpgsqlConnectionStringBuilder(
            configuration.GetConnectionString("Database") ?? throw new InvalidOperationException("ConnectionStrings:Database is not set."))
        {
            MaxPoolSize = Math.Clamp(configuration.GetValue(sizeSetting, defaultSize), 1, 200),
            MinPoolSize = 0,
        }.ConnectionString).Build();

    /// <summary>Applies the platform's and the service's pending migrations before the app serves anything.</summary>
    public static async Task MigrateDatabaseAsync(this WebApplication app)
    {
        var dataSource = app.Services.GetRequiredService<NpgsqlDataSource>();
        var scripts = app.Services.GetRequiredService<MigrationScripts>();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Billing.Migrations");
        await DatabaseMigrator.MigrateAsync(dataSource.ConnectionString, scripts.Assembly, logger, app.Lifetime.ApplicationStopping);
    }
}

/// <summary>The assembly whose embedded <c>Migrations/*.sql</c> belong to this service.</summary>
public sealed record MigrationScripts(Assembly Assembly);

internal sealed class DatabaseHealthCheck(NpgsqlDataSource dataSource) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await using var command = dataSource.CreateCommand("SELECT 1");
            await command.ExecuteScalarAsync(cancellationToken);
            return HealthCheckResult.Healthy("PostgreSQL answers");
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            return HealthCheckResult.Unhealthy("PostgreSQL does not answer: " + ex.Message);
        }
    }
}
