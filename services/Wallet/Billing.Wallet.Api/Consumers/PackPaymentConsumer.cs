using Billing.Contracts;
using Billing.ServiceDefaults.Messaging;
using Billing.Wallet.Api.Persistence;
using Billing.Wallet.Core.Ledger;
using MassTransit;

namespace Billing.Wallet.Api.Consumers;

/// <summary>
/// Grants a paid pack's tokens once per checkout session, and moves its claw-back as its payment changes: the refunded
/// share when it is refunded, all of it while a chargeback stands, and back again when a refund fails or a chargeback is
/// won. All run through the inbox, so a redelivered message changes nothing; the ledger's dedupe key also drops the same
/// purchase published twice under different message ids, and the purchase's recorded state drops an older message.
/// </summary>
public sealed class PackPaymentConsumer(Inbox inbox, WalletStore store, ILogger<PackPaymentConsumer> logger)
    : IConsumer<TokenPackPurchased>, IConsumer<PaymentRefunded>, IConsumer<PaymentDisputed>, IConsumer<PaymentDisputeClosed>
{
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
        var m = context.Message;
        return m.Kind != "token_pack" ? Task.CompletedTask : FollowAsync(context, new PackPaymentChange(m.UserId, m.PaymentId, m.PaymentIntentId,
            m.ChargeId, m.StripeEventId, new RefundState(m.RefundsUndone, m.AmountRefunded, m.Amount, m.FullyRefunded), null,
            $"refund of {m.AmountRefunded} of {m.Amount} {m.Currency}"));
    }

    /// <summary>As a full refund while it stands: the bank has taken the money back.</summary>
    public Task Consume(ConsumeContext<PaymentDisputed> context)
    {
        var m = context.Message;
        return m.Kind != "token_pack" ? Task.CompletedTask : FollowAsync(context, new PackPaymentChange(m.UserId, m.PaymentId, m.PaymentIntentId,
            m.ChargeId, m.StripeEventId, null, Clawback.DisputeOpen, $"chargeback of {m.AmountDisputed} of {m.Amount} {m.Currency}"));
    }

    /// <summary>Won: the money is back, and so are the tokens the chargeback took (less what refunds take).</summary>
    public Task Consume(ConsumeContext<PaymentDisputeClosed> context)
    {
        var m = context.Message;
        return m.Kind != "token_pack" ? Task.CompletedTask : FollowAsync(context, new PackPaymentChange(m.UserId, m.PaymentId, m.PaymentIntentId,
            m.ChargeId, m.StripeEventId, null, m.Status, $"chargeback {m.Status}, {m.Amount} {m.Currency}"));
    }

    private Task FollowAsync<T>(ConsumeContext<T> context, PackPaymentChange change) where T : class =>
        inbox.HandleOnceAsync(context, GetType(), (c, tx, ct) => store.FollowPaymentAsync(c, tx, change, ct));
}
