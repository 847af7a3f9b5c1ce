using Billing.Gateway;
using Billing.Gateway.Demo;
using Billing.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("gateway");
builder.AddGatewayProxy();
builder.AddGatewaySecurity();
builder.AddBillingDemo();
builder.AddConsumeBatching();
// wwwroot (web elements, demo) from the build output too: deploy/billing runs the gateway from bin/, not a publish folder.
builder.WebHost.UseStaticWebAssets();

var app = builder.Build();
app.UseCors();
app.UseBillingStaticFiles();
app.UseServiceDefaults(beforeAuthentication: a => a.UseBatchedConsumeShortcut());
app.UseRateLimiter();
app.UseRequestBodyLimits(app.Configuration);
app.MapDefaultEndpoints();
app.MapReturnPages();
app.MapApiDocs();
app.MapBillingDemo();
app.MapBatchedConsume(); // before the YARP route of the same path (its Order is 1): that one serves only when batching is off
app.MapReverseProxy();

await app.RunAsync();

/// <summary>Entry point; public so tests can host it with WebApplicationFactory.</summary>
public partial class Program;
