using Billing.Usage.Api.Consuming;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Api.Subscribers;

namespace Billing.Usage.Api;

public static class UsageServices
{
    /// <summary>Usage's stores and handlers; all stateless singletons over the one data source.</summary>
    public static IServiceCollection AddUsageServices(this IServiceCollection services)
    {
        services.AddSingleton<SubscriberStore>();
        services.AddSingleton<ConsumptionStore>();
        services.AddSingleton<TokenBalanceStore>();
        services.AddSingleton<UsageReadStore>();
        services.AddSingleton<ConsumeHandler>();
        services.AddSingleton<UsageQueries>();
        services.AddSingleton<SubscriberEventsHandler>();
        return services;
    }
}
