using Billing.Contracts;
using Billing.Usage.Api.Subscribers;
using Billing.Usage.Core.Subscribers;
using MassTransit;

namespace Billing.Usage.Api.Consumers;

/// <summary>A subscription became trialing or active: its plan's allowances apply.</summary>
public sealed class SubscriptionActivatedConsumer(SubscriberEventsHandler handler) : IConsumer<SubscriptionActivated>
{
    public Task Consume(ConsumeContext<SubscriptionActivated> context) =>
        handler.HandleAsync(MessageIdOf(context), nameof(SubscriptionActivatedConsumer), SubscriptionChange.From(context.Message), context.CancellationToken);

    internal static Guid MessageIdOf(ConsumeContext context) =>
        context.MessageId ?? throw new InvalidOperationException("A message without MessageId cannot be de-duplicated.");
}

/// <summary>Status, plan or period changed: an upgrade applies at once, a terminal status falls back to the free plan.</summary>
public sealed class SubscriptionUpdatedConsumer(SubscriberEventsHandler handler) : IConsumer<SubscriptionUpdated>
{
    public Task Consume(ConsumeContext<SubscriptionUpdated> context) =>
        handler.HandleAsync(SubscriptionActivatedConsumer.MessageIdOf(context), nameof(SubscriptionUpdatedConsumer),
            SubscriptionChange.From(context.Message), context.CancellationToken);
}

/// <summary>The subscription is over: the free plan applies.</summary>
public sealed class SubscriptionEndedConsumer(SubscriberEventsHandler handler) : IConsumer<SubscriptionEnded>
{
    public Task Consume(ConsumeContext<SubscriptionEnded> context) =>
        handler.HandleAsync(SubscriptionActivatedConsumer.MessageIdOf(context), nameof(SubscriptionEndedConsumer),
            SubscriptionChange.From(context.Message), context.CancellationToken);
}

/// <summary>Past due beyond grace: consumes answer 402 <c>payment_past_due</c> until the subscription is active again.</summary>
public sealed class SubscriptionAccessSuspendedConsumer(SubscriberEventsHandler handler) : IConsumer<SubscriptionAccessSuspended>
{
    public Task Consume(ConsumeContext<SubscriptionAccessSuspended> context) =>
        handler.HandleAsync(SubscriptionActivatedConsumer.MessageIdOf(context), nameof(SubscriptionAccessSuspendedConsumer), context.Message,
            context.CancellationToken);
}

/// <summary>A paid renewal moves the billing period, which starts a new <c>period</c> window.</summary>
public sealed class InvoicePaidConsumer(SubscriberEventsHandler handler) : IConsumer<InvoicePaid>
{
    public Task Consume(ConsumeContext<InvoicePaid> context) =>
        handler.HandleAsync(SubscriptionActivatedConsumer.MessageIdOf(context), nameof(InvoicePaidConsumer), context.Message, context.CancellationToken);
}

/// <summary>Keeps the token balance shown in consume answers current.</summary>
public sealed class TokensGrantedConsumer(SubscriberEventsHandler handler) : IConsumer<TokensGranted>
{
    public Task Consume(ConsumeContext<TokensGranted> context) =>
        handler.HandleBalanceAsync(SubscriptionActivatedConsumer.MessageIdOf(context), nameof(TokensGrantedConsumer), context.Message.UserId,
            context.Message.BalanceAfter, context.Message.OccurredAt, context.CancellationToken);
}

/// <summary>Keeps the token balance shown in consume answers current after a refund.</summary>
public sealed class TokensClawedBackConsumer(SubscriberEventsHandler handler) : IConsumer<TokensClawedBack>
{
    public Task Consume(ConsumeContext<TokensClawedBack> context) =>
        handler.HandleBalanceAsync(SubscriptionActivatedConsumer.MessageIdOf(context), nameof(TokensClawedBackConsumer), context.Message.UserId,
            context.Message.BalanceAfter, context.Message.OccurredAt, context.CancellationToken);
}
