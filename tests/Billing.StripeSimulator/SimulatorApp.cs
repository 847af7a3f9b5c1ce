using Billing.StripeSimulator.Api;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Engine;
using Billing.StripeSimulator.Infrastructure;
using Billing.StripeSimulator.Pages;
using Billing.StripeSimulator.Persistence;
using Billing.StripeSimulator.Webhooks;

namespace Billing.StripeSimulator;

/// <summary>Builds the simulator: a Stripe look-alike for Stripe.net 53.1.0 on loopback.</summary>
public static class SimulatorApp
{
    public const string DefaultUrl = "http://127.0.0.1:12111";
    public const string DefaultWebhookUrl = "http://127.0.0.1:8080/webhooks/stripe";
    public const string DefaultWebhookSecret = "whsec_billing_local_dev_secret";

    public static WebApplication Build(string[] args, Action<SimOptions>? configure = null)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        var urls = builder.Configuration["urls"];
        if (string.IsNullOrWhiteSpace(urls))
        {
            urls = DefaultUrl;
            builder.WebHost.UseUrls(urls);
        }
        var firstUrl = urls.Split(';', StringSplitOptions.RemoveEmptyEntries)[0].Trim();
        var options = new SimOptions
        {
            PublicUrl = Env("SIM_PUBLIC_URL") ?? firstUrl,
            WebhookUrl = Environment.GetEnvironmentVariable("SIM_WEBHOOK_URL") ?? DefaultWebhookUrl,
            WebhookSecret = Env("STRIPE_WEBHOOK_SECRET") ?? DefaultWebhookSecret,
            StateFile = Env("SIM_STATE_FILE"),
        };
        configure?.Invoke(options);
        var sim = new Sim(options);

        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Warning);
        builder.Services.AddSingleton(sim);
        if (!string.IsNullOrWhiteSpace(options.StateFile))
        {
            // Registered before the other hosted services so that it stops after them and saves what they did last.
            builder.Services.AddSingleton(sp => new StateFileStore(sim, options.StateFile, sp.GetRequiredService<ILogger<StateFileStore>>()));
            builder.Services.AddHostedService<StatePersister>();
        }
        builder.Services.AddHttpClient("webhooks", c => c.Timeout = TimeSpan.FromSeconds(10));
        builder.Services.AddSingleton<WebhookDispatcher>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<WebhookDispatcher>());
        builder.Services.AddHostedService<ClockTicker>();

        var app = builder.Build();
        app.Services.GetService<StateFileStore>()?.Load();
        app.Use(async (http, next) =>
        {
            try
            {
                await next(http);
            }
            finally
            {
                if (!(HttpMethods.IsGet(http.Request.Method) || HttpMethods.IsHead(http.Request.Method) || HttpMethods.IsOptions(http.Request.Method)))
                {
                    sim.State.Touch(); // anything but a read may have changed the state
                }
            }
        });
        app.UseMiddleware<StripeMiddleware>();
        app.MapGet("/", () => Results.Text("Billing Stripe simulator (API version " + Rendering.StripeJson.ApiVersion + ")"));
        app.MapGet("/health", () => Results.Text("ok"));
        app.MapCatalogApi();
        app.MapCheckoutApi();
        app.MapSubscriptionsApi();
        app.MapSubscriptionSchedulesApi();
        app.MapInvoicesApi();
        app.MapPaymentsApi();
        app.MapMetersApi();
        app.MapEventsApi();
        app.MapSimControlApi();
        app.MapHostedPages();
        app.MapFallback("/v1/{**rest}", (string rest) =>
            Results.Text(new StripeError(404, "invalid_request_error", null, null, $"Unrecognized request URL (/v1/{rest}). The simulator implements only part of the Stripe API.").ToJson().ToJsonString(Rendering.StripeJson.Wire), "application/json", statusCode: 404));
        return app;
    }

    /// <summary>Once the simulator's public URL is known (a test that listens on port 0), point page URLs at it.</summary>
    public static void UsePublicUrl(this WebApplication app, string url)
    {
        var sim = app.Services.GetRequiredService<Sim>();
        lock (sim.State.Gate)
        {
            sim.State.Options.PublicUrl = url;
        }
    }

    private static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : null;
}

/// <summary>Time also passes by itself: every few seconds whatever fell due (trials, renewals, retries) is processed.</summary>
internal sealed class ClockTicker(Sim sim) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(5));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                int processed;
                lock (sim.State.Gate)
                {
                    processed = sim.Engine.ProcessDue(sim.State.Now);
                }
                if (processed > 0)
                {
                    sim.State.Touch();
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
