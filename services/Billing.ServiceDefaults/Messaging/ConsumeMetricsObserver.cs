using MassTransit;

namespace Billing.ServiceDefaults.Messaging;

/// <summary>
/// Counts every integration event a consumer handled, by type and result, with its latency from receipt; a consumer
/// that throws counts as a fault (each attempt: retries are visible as faults followed by an ok); the last attempts fault, after which the message
/// goes to the <c>_error</c> queue, also counts as a failed event.
/// </summary>
internal sealed class ConsumeMetricsObserver(string service) : IConsumeObserver
{
    public Task PreConsume<T>(ConsumeContext<T> context) where T : class => Task.CompletedTask;

    public Task PostConsume<T>(ConsumeContext<T> context) where T : class
    {
        BillingMetrics.RecordMessageConsumed(service, typeof(T).Name, ok: true, context.ReceiveContext.ElapsedTime);
        return Task.CompletedTask;
    }

    public Task ConsumeFault<T>(ConsumeContext<T> context, Exception exception) where T : class
    {
        BillingMetrics.RecordMessageConsumed(service, typeof(T).Name, ok: false, context.ReceiveContext.ElapsedTime);
        if (context.GetRetryAttempt() >= BusExtensions.RetryLimit)
        {
            BillingMetrics.RecordFailedEvent("consumer", typeof(T).Name);
        }
        return Task.CompletedTask;
    }
}
