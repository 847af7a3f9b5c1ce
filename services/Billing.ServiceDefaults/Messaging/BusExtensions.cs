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

    /// <summary>
    /// The waits, in seconds, between further attempts at a message that failed because something it needs is not
    /// there yet (<see cref="BusExtensions.RetryLater"/>): 2 s, then longer up to 5 min, about 20 minutes in all, within RabbitMQ's
    /// 30-minute limit on a message held by a consumer.
    /// </summary>
    public string RetryLaterSeconds { get; set; } = "2,10,30,60,120,300,300,300";
}

/// <summary>
/// A message cannot be handled yet: something it needs has not happened or is not reachable (an earlier message, a
/// service). It is tried again for minutes (<see cref="RabbitMqSettings.RetryLaterSeconds"/>), not seconds.
/// </summary>
public class RetryLaterException(string message, Exception? inner = null) : Exception(message, inner);

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
            // MassTransit reports usage to its vendor (usage-tracking.masstransit.io) unless told not to: a billing backend
            // makes no calls nobody asked for, and offline it logged a stack trace every 20 minutes.
            x.DisableUsageTelemetry();
            x.SetEndpointNameFormatter(new KebabCaseEndpointNameFormatter(settings.QueuePrefix + serviceName, false));
            consumers?.Invoke(x);
            var later = RetryLaterIntervals(settings);
            x.AddConfigureEndpointsCallback((_, _, endpoint) =>
            {
                // Outer: what cannot succeed until something else is back (the database, a service, an earlier message)
                // is tried again for about 20 minutes, so an outage of that long sends nothing to _error.
                endpoint.UseMessageRetry(r =>
                {
                    r.Handle<Exception>(RetryLater);
                    r.Intervals(later);
                });
                // Inner: other faults get quick retries; what still fails lands in _error. What the outer policy retries is
                // left to it alone, or each of its attempts would add the quick ones (~20 s, and a connect timeout each)
                // and the whole could outlast RabbitMQ's 30-minute hold on a delivered message.
                endpoint.UseMessageRetry(r =>
                {
                    r.Ignore<Exception>(RetryLater);
                    r.Exponential(RetryLimit, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(400));
                });
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

    /// <summary>
    /// Failures that only time heals: <see cref="RetryLaterException"/>, a database that cannot be reached, Stripe or
    /// another service that does not answer.
    /// </summary>
    public static bool RetryLater(Exception ex) => ex switch
    {
        RetryLaterException or Billing.ServiceDefaults.Stripe.StripeUnavailableException or TimeoutException or HttpRequestException => true,
        Npgsql.NpgsqlException npgsql => npgsql.IsTransient,
        _ => ex.InnerException is { } inner && RetryLater(inner),
    };

    private static TimeSpan[] RetryLaterIntervals(RabbitMqSettings settings) =>
        settings.RetryLaterSeconds.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => TimeSpan.FromSeconds(double.Parse(s, System.Globalization.CultureInfo.InvariantCulture)))
            .ToArray();
}
