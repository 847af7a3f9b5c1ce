using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Messaging;
using Billing.ServiceDefaults.Stripe;
using Billing.Subscriptions.Api.Consumers;
using Billing.Subscriptions.Api.Endpoints;
using Billing.Subscriptions.Api.Persistence;
using Billing.Subscriptions.Api.Stripe;
using MassTransit;

if (args is ["catalog", ..])
{
    // deploy/billing catalog check|push: validate a catalog, or create its products and prices in Stripe.
    var configuration = new ConfigurationBuilder().AddEnvironmentVariables().Build();
    return await CatalogCommands.RunAsync(args[1..], configuration);
}

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("subscriptions");
builder.AddBillingCatalog();
builder.AddBillingDatabase(typeof(Program).Assembly);
builder.AddBillingBus("subscriptions", bus => bus.AddConsumers(typeof(Program).Assembly));
builder.AddBillingStripe();
builder.Services.AddSingleton<SubscriptionStore>();
builder.Services.AddSingleton<StripeCustomers>();
builder.Services.AddSingleton<CheckoutLocks>();
builder.Services.AddSingleton<RetiredPrices>();
builder.Services.AddSingleton(ReturnUrls.From(builder.Configuration));
builder.Services.AddHostedService<GraceWatcher>();

var app = builder.Build();
await app.MigrateDatabaseAsync();
app.UseServiceDefaults();
app.MapDefaultEndpoints();
app.MapCatalogApi();
app.MapSubscriptionApi();
app.MapLifecycleApi();
app.MapUpcomingInvoiceApi();
app.MapSubscriptionAdminApi();

await app.RunAsync();
return 0;

/// <summary>Entry point; public so tests can host it with WebApplicationFactory.</summary>
public partial class Program;
