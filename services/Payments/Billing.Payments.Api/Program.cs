using Billing.Payments.Api.Endpoints;
using Billing.Payments.Api.Persistence;
using Billing.Payments.Api.Webhooks;
using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Messaging;
using Billing.ServiceDefaults.Stripe;
using MassTransit;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("payments");
builder.AddBillingCatalog();
builder.AddBillingDatabase(typeof(Program).Assembly);
builder.AddBillingBus("payments", bus => bus.AddConsumers(typeof(Program).Assembly));
builder.AddBillingStripe();
builder.Services.AddSingleton<EventStore>();
builder.Services.AddSingleton<StripeEventHandler>();
builder.Services.AddSingleton(builder.Configuration.GetSection("Webhooks").Get<WebhookProcessorOptions>() ?? new WebhookProcessorOptions());
builder.Services.AddHostedService<WebhookProcessor>();
builder.Services.AddSingleton(builder.Configuration.GetSection("Reconcile").Get<ReconcileOptions>() ?? new ReconcileOptions());
builder.Services.AddSingleton<Reconciler>();
builder.Services.AddHostedService<ReconcileJob>();

var app = builder.Build();
await app.MigrateDatabaseAsync();
app.UseServiceDefaults();
app.MapDefaultEndpoints();
app.MapStripeWebhook();
app.MapPaymentsApi();
app.MapAdminPaymentsApi();

await app.RunAsync();

/// <summary>Entry point; public so tests can host it with WebApplicationFactory.</summary>
public partial class Program;
