using MassTransit;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Billing.ServiceDefaults.Messaging;

/// <summary>RabbitMQ connection settings (section <c>RabbitMq</c>, env <c>RabbitMq__Host</c> …).</summary>
public sealed class RabbitMqSettings
{
    public string Host { get; set; } = "127.0.0.1";
    public ushort Port { get; set; } = 5672;
    public string VirtualHost { get; set; } = "/";
    public string Username { get; set; } = "guest";
    public string Password { get; set; } = "guest";
    /// <summary>Put in front of every queue name; tests give each run its own so runs never share queues.</summary>
    public string QueuePrefix { get; set; } = "";
}

/// <summary>The MassTransit RabbitMQ bus every service shares, plus our Dapper outbox relay.</summary>
public static class BusExtensions
{
    /// <summary>Retries of one message before it goes to the <c>_error</c> queue.</summary>
    internal const int RetryLimit = 6;

    /// <summary>
    /// Adds the bus with queues named <c>{QueuePrefix}{service}-{consumer}</c> in kebab case, one global retry policy,
    /// error queues (MassTransit's <c>_error</c>), a readiness check named <c>broker</c>, and the outbox relay.
    /// </summary>
    public static TBuilder AddBillingBus<TBuilder>(this TBuilder builder, string serviceName, Action<IBusRegistrationConfigurator>? consumers = null)
        where TBuilder : IHostApplicationBuilder
    {
        var settings = builder.Configuration.GetSection("RabbitMq").Get<RabbitMqSettings>() ?? new RabbitMqSettings();
        builder.Services.AddSingleton(settings);

        builder.Services.AddMassTransit(x =>
        {
            x.SetEndpointNameFormatter(new KebabCaseEndpointNameFormatter(settings.QueuePrefix + serviceName, false));
            consumers?.Invoke(x);
            x.AddConfigureEndpointsCallback((_, _, endpoint) =>
            {
                // Transient faults (a deadlock, a broker blip) heal in seconds; what still fails lands in _error.
                endpoint.UseMessageRetry(r => r.Exponential(RetryLimit, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(400)));
            });
            x.ConfigureHealthCheckOptions(o =>
            {
                o.Name = "broker";
                o.Tags.Clear();
                o.Tags.Add("ready");
            });
            x.UsingRabbitMq((context, cfg) =>
            {
                cfg.Host(settings.Host, settings.Port, settings.VirtualHost, h =>
                {
                    h.Username(settings.Username);
                    h.Password(settings.Password);
                    h.RequestedConnectionTimeout(TimeSpan.FromSeconds(5));
                });
                // Every consumer works under the correlation id its message carried (log scope, and on to what it enqueues).
                cfg.UseConsumeFilter(typeof(CorrelationConsumeFilter<>), context);
                cfg.ConfigureEndpoints(context);
            });
        });
        builder.Services.Configure<MassTransitHostOptions>(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = TimeSpan.FromSeconds(60);
            o.StopTimeout = TimeSpan.FromSeconds(15);
        });

        builder.Services.AddConsumeObserver(_ => new ConsumeMetricsObserver(serviceName));

        builder.Services.AddSingleton(new OutboxRelayOptions());
        builder.Services.AddHostedService<OutboxRelay>();
        builder.Services.AddSingleton(sp => ActivatorUtilities.CreateInstance<OutboxBacklogMonitor>(sp).WithService(serviceName));
        builder.Services.AddHostedService(sp => sp.GetRequiredService<OutboxBacklogMonitor>());
        builder.Services.AddSingleton<Inbox>();
        return builder;
    }
}
