using MassTransit;
using Microsoft.Extensions.Logging;

namespace Billing.ServiceDefaults.Messaging;

/// <summary>
/// Takes up the correlation id a message carries (the <c>X-Correlation-Id</c> header the outbox relay sets): the
/// consumer runs with it in its log scope and as <see cref="CorrelationId.Current"/>, so what it writes to its own outbox
/// carries the same id on. A missing or malformed header leaves the consumer without one.
/// </summary>
public sealed class CorrelationConsumeFilter<T>(ILogger<CorrelationConsumeFilter<T>> logger) : IFilter<ConsumeContext<T>> where T : class
{
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        var id = context.Headers.Get<string>(CorrelationId.Header);
        if (!CorrelationId.IsWellFormed(id))
        {
            await next.Send(context);
            return;
        }
        var previous = CorrelationId.Current;
        using (logger.BeginScope(new CorrelationScope(id!)))
        {
            CorrelationId.Current = id;
            try
            {
                await next.Send(context);
            }
            finally
            {
                CorrelationId.Current = previous;
            }
        }
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("correlationId");
}
