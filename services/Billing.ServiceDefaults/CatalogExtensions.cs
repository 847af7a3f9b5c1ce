using Billing.Catalog;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Billing.ServiceDefaults;

/// <summary>Loads the catalog (<c>BILLING_CATALOG</c>) once at start; an invalid file stops the service with every error.</summary>
public static class CatalogExtensions
{
    /// <summary>Registers the <see cref="BillingCatalog"/> singleton.</summary>
    public static TBuilder AddBillingCatalog<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        var path = builder.Configuration["BILLING_CATALOG"] is { Length: > 0 } p ? p : FindDefault(builder.Environment.ContentRootPath);
        builder.Services.AddSingleton(CatalogLoader.Load(path));
        return builder;
    }

    private static string FindDefault(string from)
    {
        for (var dir = new DirectoryInfo(from); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "deploy", "catalogs", "default.json");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return Path.Combine(from, "catalog.json");
    }
}
