using Scalar.AspNetCore;

namespace Billing.Gateway;

/// <summary>
/// <c>/docs</c>: an API reference over every service's OpenAPI document, each fetched through the gateway at
/// <c>/openapi/{service}.json</c> (routes in appsettings.json, forwarded to the service's <c>/openapi/v1.json</c>).
/// </summary>
internal static class ApiDocs
{
    public static readonly string[] Services = ["subscriptions", "payments", "usage", "wallet"];

    public static WebApplication MapApiDocs(this WebApplication app)
    {
        app.MapScalarApiReference("/docs", options =>
        {
            options.WithTitle("Billing API");
            options.WithOpenApiRoutePattern("/openapi/{documentName}.json");
            foreach (var service in Services)
            {
                options.AddDocument(service, char.ToUpperInvariant(service[0]) + service[1..]);
            }
        }).AllowAnonymous();
        return app;
    }
}
