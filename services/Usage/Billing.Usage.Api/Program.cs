using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Messaging;
using Billing.Usage.Api;
using Billing.Usage.Api.Endpoints;
using MassTransit;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("usage");
builder.AddBillingCatalog();
builder.AddBillingDatabase(typeof(Program).Assembly);
builder.AddBillingBus("usage", bus => bus.AddConsumers(typeof(Program).Assembly));
builder.AddUsageServices();

var app = builder.Build();
await app.MigrateDatabaseAsync();
app.UseConsumeBatches(); // first: a batched consume then goes through everything below, as one sent alone does
app.UseServiceDefaults();
app.MapDefaultEndpoints();
app.MapConsumeApi();
app.MapConsumeBatchApi();
app.MapReservationApi();
app.MapUsageApi();
app.MapAdminUsageApi();

await app.RunAsync();

/// <summary>Entry point; public so tests can host it with WebApplicationFactory.</summary>
public partial class Program;
