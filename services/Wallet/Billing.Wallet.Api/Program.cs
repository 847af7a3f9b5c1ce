using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Messaging;
using Billing.ServiceDefaults.Stripe;
using Billing.Wallet.Api.Consumers;
using Billing.Wallet.Api.Endpoints;
using Billing.Wallet.Api.Persistence;
using MassTransit;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("wallet");
builder.AddBillingCatalog();
builder.AddBillingDatabase(typeof(Program).Assembly);
builder.AddBillingBus("wallet", bus => bus.AddConsumers(typeof(Program).Assembly));
builder.AddBillingStripe();
builder.Services.AddSingleton<WalletStore>();
builder.Services.AddSingleton<PackCheckouts>();
builder.Services.AddSingleton(ReturnUrls.From(builder.Configuration));
builder.Services.AddHostedService<ExpirySweeper>();

var app = builder.Build();
await app.MigrateDatabaseAsync();
app.UseServiceDefaults();
app.MapDefaultEndpoints();
app.MapWalletApi();
app.MapInternalWalletApi();
app.MapAdminWalletApi();

await app.RunAsync();

/// <summary>Entry point; public so tests can host it with WebApplicationFactory.</summary>
public partial class Program;
