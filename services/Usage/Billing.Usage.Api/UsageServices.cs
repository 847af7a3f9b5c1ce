using Billing.ServiceDefaults.Stripe;
using Billing.Usage.Api.Consuming;
using Billing.Usage.Api.Overage;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Api.Reservations;
using Billing.Usage.Api.Spending;
using Billing.Usage.Api.Subscribers;
using Billing.Usage.Api.Wallet;
using Npgsql;

namespace Billing.Usage.Api;

public static class UsageServices
{
    /// <summary>
    /// Usage's stores, handlers and background workers: the group-commit spend writer, the quota announcer, the reservation sweeper and the
    /// overage reporter (when Stripe is configured). All stateless singletons over the one data source.
    /// </summary>
    public static WebApplicationBuilder AddUsageServices(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddSingleton<SubscriberStore>();
        services.AddSingleton<ConsumptionStore>();
        services.AddSingleton<ReservationStore>();
        services.AddSingleton<TokenBalanceStore>();
        services.AddSingleton<UsageReadStore>();
        services.AddSingleton<SubscriberCache>();
        services.AddSingleton<QuotaAnnouncer>();
        services.AddHostedService(sp => sp.GetRequiredService<QuotaAnnouncer>());
        services.AddSingleton<SpendWriter>();
        services.AddHostedService(sp => sp.GetRequiredService<SpendWriter>());
        services.AddSingleton<ConsumeHandler>();
        services.AddSingleton<Endpoints.ConsumeBatchRunner>();
        services.AddSingleton<TokenClaimExpiry>();
        services.AddSingleton<ReservationHandler>();
        services.AddSingleton<TokenReturns>();
        services.AddSingleton<ReservationSweeper>();
        services.AddHostedService(sp => sp.GetRequiredService<ReservationSweeper>());
        services.AddSingleton<UsageQueries>();
        services.AddSingleton<RetentionStore>();
        services.AddSingleton<UsageRetention>();
        services.AddHostedService(sp => sp.GetRequiredService<UsageRetention>());
        services.AddSingleton<SubscriberEventsHandler>();

        services.AddSingleton<ServiceToken>();
        services.AddHttpClient<WalletClient>(http =>
        {
            if (builder.Configuration["Services:wallet"] is { Length: > 0 } wallet)
            {
                http.BaseAddress = new Uri(wallet.TrimEnd('/') + "/");
            }
            http.Timeout = TimeSpan.FromSeconds(5);
        });

        if (!string.IsNullOrWhiteSpace(builder.Configuration["STRIPE_SECRET_KEY"]))
        {
            builder.AddBillingStripe();
            services.AddSingleton<OverageReporter>();
            services.AddHostedService(sp => sp.GetRequiredService<OverageReporter>());
            services.AddSingleton<OverageCheck>();
            services.AddSingleton<OverageCheckSchedule>();
            services.AddHostedService(sp => sp.GetRequiredService<OverageCheckSchedule>());
        }
        return builder;
    }
}
