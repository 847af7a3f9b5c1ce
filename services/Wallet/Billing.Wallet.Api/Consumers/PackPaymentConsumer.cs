using Billing.Contracts;
using Billing.ServiceDefaults.Messaging;
using Billing.Wallet.Api.Persistence;
using MassTransit;

namespace Billing.Wallet.Api.Consumers;

/// <summary>
/// Grants a paid pack's tokens once per checkout session, and takes back the refunded share when it is refunded — all of
/// it when its payment is disputed (a chargeback). All run through the inbox, so a redelivered message changes nothing;
/// the ledger's dedupe key also drops the same purchase published twice under different message ids.
/// </summary>
public sealed class PackPaymentConsumer(Inbox inbox, WalletStore store, ILogger<PackPaymentConsumer> logger)
    : IConsumer<TokenPackPurchased>, IConsumer<PaymentRefunded>, IConsumer<PaymentDisputed>
{
    public Task Consume(ConsumeContext<PaymentDisputed> context)
    {
        var m = context.Message;
        if (m.Kind != "token_pack")
        {
            return Task.CompletedTask;
        }
        // As a full refund: the bank has taken the money back. A refund made before counts (the claw-back is cumulative).
        var asRefund = new PaymentRefunded
        {
            UserId = m.UserId, PaymentId = m.PaymentId, Kind = m.Kind, ChargeId = m.ChargeId, PaymentIntentId = m.PaymentIntentId,
            Amount = m.Amount, AmountRefunded = m.Amount, Currency = m.Currency, FullyRefunded = true, PackId = m.PackId,
            PackTokens = m.PackTokens, OccurredAt = m.OccurredAt, StripeEventId = m.StripeEventId,
        };
        return inbox.HandleOnceAsync(context, GetType(), (c, tx, ct) => store.ClawBackAsync(c, tx, asRefund, ct));
    }

    public Task Consume(ConsumeContext<TokenPackPurchased> context) =>
        inbox.HandleOnceAsync(context, GetType(), async (c, tx, ct) =>
        {
            if (!await store.GrantPurchaseAsync(c, tx, context.Message, ct))
            {
                logger.LogInformation("Checkout {Session} was granted before; nothing to do", context.Message.CheckoutSessionId);
            }
        });

    public Task Consume(ConsumeContext<PaymentRefunded> context)
    {
        if (context.Message.Kind != "token_pack")
        {
            return Task.CompletedTask;
        }
        return inbox.HandleOnceAsync(context, GetType(), (c, tx, ct) => store.ClawBackAsync(c, tx, context.Message, ct));
    }
}
