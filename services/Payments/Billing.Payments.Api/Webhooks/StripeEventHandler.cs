using System.Globalization;
using System.Text.Json;
using Billing.Catalog;
using Billing.Contracts;
using Billing.Contracts.Values;
using Billing.Payments.Core.Subscriptions;
using Billing.Payments.Core.Webhooks;
using Billing.ServiceDefaults.Messaging;
using Billing.ServiceDefaults.Stripe;
using Dapper;
using Npgsql;
using Stripe;
using static Billing.ServiceDefaults.Stripe.StripeDates;

namespace Billing.Payments.Api.Webhooks;

/// <summary>A stored event, as the processor hands it over.</summary>
public sealed record StoredEvent(string Id, string Type, string OrderKey, string? ObjectId, DateTimeOffset StripeCreated, int Attempts);

/// <summary>
/// Turns one Stripe event into Billing's state and integration events, inside the processor's transaction. It never
/// trusts the webhook's snapshot: it re-reads the object from Stripe, so a late, repeated or reordered event can only
/// ever move Billing to Stripe's current state. Every message it enqueues has an id derived from what caused it.
/// </summary>
public sealed class StripeEventHandler(IStripeClient stripe, StripeCalls calls, BillingCatalog catalog, TimeProvider clock,
    ILogger<StripeEventHandler> logger)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public async Task HandleAsync(NpgsqlConnection c, NpgsqlTransaction tx, StoredEvent e, CancellationToken ct)
    {
        try
        {
            await ApplyAsync(c, tx, e, ct);
        }
        catch (NotBillingsException notOurs)
        {
            // Another product on the same Stripe account: done with, not failed (the failed list is for admins to act on).
            logger.LogWarning("Stripe event {EventId} ({Type}) is not about Billing's objects; done with: {Reason}", e.Id, e.Type, notOurs.Message);
        }
    }

    private async Task ApplyAsync(NpgsqlConnection c, NpgsqlTransaction tx, StoredEvent e, CancellationToken ct)
    {
        var id = e.ObjectId ?? throw new InvalidOperationException($"Event {e.Id} names no object.");
        switch (e.Type)
        {
            case StripeEventTypes.SubscriptionCreated or StripeEventTypes.SubscriptionUpdated or StripeEventTypes.SubscriptionDeleted
                or StripeEventTypes.SubscriptionPaused or StripeEventTypes.SubscriptionResumed:
                await SyncSubscriptionAsync(c, tx, id, e, ct);
                break;
            case StripeEventTypes.SubscriptionTrialWillEnd:
                var read = await calls.RunAsync(t => new SubscriptionService(stripe).GetAsync(id, cancellationToken: t), ct);
                var trialing = await SyncSubscriptionAsync(c, tx, read, e, ct);
                if (trialing is { Status: "trialing", TrialEnd: { } trialEnd })
                {
                    // "Add a card or the trial ends" or "your card will be charged": a trial can start without a card.
                    var onFile = await PaymentMethods.OnFileAsync(read, stripe, calls, ct);
                    await EnqueueAsync(c, tx, new SubscriptionTrialEndingAnnounced
                    {
                        UserId = trialing.UserId, SubscriptionId = trialing.SubscriptionId, PlanId = trialing.PlanId, TrialEnd = trialEnd,
                        HasPaymentMethod = onFile, OccurredAt = e.StripeCreated, StripeEventId = e.Id,
                    }, Outbox.MessageId(e.Id, nameof(SubscriptionTrialEndingAnnounced)), ct);
                }
                break;
            case StripeEventTypes.InvoicePaid:
                await InvoicePaidAsync(c, tx, id, e, ct);
                break;
            case StripeEventTypes.InvoicePaymentFailed:
                await InvoicePaymentFailedAsync(c, tx, id, e, ct);
                break;
            case StripeEventTypes.CheckoutCompleted or StripeEventTypes.CheckoutAsyncSucceeded or StripeEventTypes.CheckoutAsyncFailed:
                await CheckoutAsync(c, tx, id, e, ct);
                break;
            case StripeEventTypes.ChargeRefunded:
                await ChargeRefundedAsync(c, tx, id, e, ct);
                break;
            case StripeEventTypes.ChargeRefundUpdated:
                var refund = await calls.RunAsync(t => new RefundService(stripe).GetAsync(id, cancellationToken: t), ct);
                if (refund.ChargeId is { Length: > 0 } refundedCharge)
                {
                    await ChargeRefundedAsync(c, tx, refundedCharge, e, ct);
                }
                break;
            case StripeEventTypes.ChargeDisputeCreated or StripeEventTypes.ChargeDisputeClosed or StripeEventTypes.ChargeDisputeFundsWithdrawn:
                await ChargeDisputeAsync(c, tx, id, e, ct);
                break;
            case StripeEventTypes.ScheduleCreated or StripeEventTypes.ScheduleUpdated or StripeEventTypes.ScheduleReleased
                or StripeEventTypes.ScheduleCanceled or StripeEventTypes.ScheduleCompleted:
                var schedule = await calls.RunAsync(t => new SubscriptionScheduleService(stripe).GetAsync(id, cancellationToken: t), ct);
                if ((schedule.SubscriptionId ?? schedule.ReleasedSubscription) is { Length: > 0 } scheduled)
                {
                    await SyncSubscriptionAsync(c, tx, scheduled, e, ct);
                }
                break;
            default:
                // Queued as handled by a newer release (a rollout in progress): done with here, it would be lost. It waits for a
                // replica that knows it.
                throw new RetryLaterException($"Event type {e.Type} is not handled by this release; a replica of a newer one processes it.");
        }
    }

    /// <summary>Re-reads the subscription and publishes what changed since Payments last published it.</summary>
    public async Task<SubscriptionSnapshot> SyncSubscriptionAsync(NpgsqlConnection c, NpgsqlTransaction tx, string subscriptionId, StoredEvent e, CancellationToken ct) =>
        await SyncSubscriptionAsync(c, tx, await calls.RunAsync(t => new SubscriptionService(stripe).GetAsync(subscriptionId, cancellationToken: t), ct), e, ct);

    /// <summary>Publishes what changed in the subscription, as just read from Stripe, since Payments last published it.</summary>
    private async Task<SubscriptionSnapshot> SyncSubscriptionAsync(NpgsqlConnection c, NpgsqlTransaction tx, Subscription subscription, StoredEvent e, CancellationToken ct)
    {
        var subscriptionId = subscription.Id;
        var snapshot = await SnapshotAsync(subscription, ct);

        var row = await c.QuerySingleOrDefaultAsync<(string Snapshot, bool Activated, bool Ended, long Sequence)?>(new CommandDefinition(
            "SELECT snapshot::text, activated, ended, sequence FROM subscription_mirror WHERE subscription_id = @subscriptionId FOR UPDATE",
            new { subscriptionId }, tx, cancellationToken: ct));
        var previous = row is { } r ? new SubscriptionMirror(JsonSerializer.Deserialize<SubscriptionSnapshot>(r.Snapshot, Json)!, r.Activated, r.Ended, r.Sequence) : null;

        var messages = SubscriptionChanges.Decide(previous, snapshot);
        var sequence = previous?.Sequence ?? 0;
        foreach (var message in messages)
        {
            // Increasing per subscription, and past anything published before: at least the time of publishing in ms. After
            // Payments' database is restored to an earlier point, its mirror's sequences go back, but what it publishes next
            // still outranks what Subscriptions and Usage applied before the restore (with plain +1 they would ignore it).
            sequence = Math.Max(sequence + 1, clock.GetUtcNow().ToUnixTimeMilliseconds());
            var messageId = Outbox.MessageId($"{subscriptionId}#{sequence}", message.ToString());
            object payload = message switch
            {
                SubscriptionMessage.Activated => new SubscriptionActivated
                {
                    UserId = snapshot.UserId, SubscriptionId = snapshot.SubscriptionId, CustomerId = snapshot.CustomerId, PlanId = snapshot.PlanId,
                    PriceId = snapshot.PriceId, Interval = snapshot.Interval, IntervalCount = snapshot.IntervalCount, Status = snapshot.Status,
                    CurrentPeriodStart = snapshot.CurrentPeriodStart, CurrentPeriodEnd = snapshot.CurrentPeriodEnd, TrialEnd = snapshot.TrialEnd,
                    CancelAtPeriodEnd = snapshot.CancelAtPeriodEnd, StartedAt = snapshot.StartedAt, ScheduledChange = snapshot.ScheduledChange,
                    Sequence = sequence, OccurredAt = e.StripeCreated, StripeEventId = e.Id,
                },
                SubscriptionMessage.Updated => new SubscriptionUpdated
                {
                    UserId = snapshot.UserId, SubscriptionId = snapshot.SubscriptionId, CustomerId = snapshot.CustomerId, PlanId = snapshot.PlanId,
                    PriceId = snapshot.PriceId, Interval = snapshot.Interval, IntervalCount = snapshot.IntervalCount, Status = snapshot.Status,
                    CurrentPeriodStart = snapshot.CurrentPeriodStart, CurrentPeriodEnd = snapshot.CurrentPeriodEnd,
                    CancelAtPeriodEnd = snapshot.CancelAtPeriodEnd, TrialEnd = snapshot.TrialEnd, StartedAt = snapshot.StartedAt,
                    PreviousStatus = previous?.Snapshot.Status, PreviousPlanId = previous?.Snapshot.PlanId,
                    ScheduledChange = snapshot.ScheduledChange, Sequence = sequence, OccurredAt = e.StripeCreated, StripeEventId = e.Id,
                },
                _ => new SubscriptionEnded
                {
                    UserId = snapshot.UserId, SubscriptionId = snapshot.SubscriptionId, PlanId = snapshot.PlanId, Status = snapshot.Status,
                    EndedAt = snapshot.EndedAt ?? e.StripeCreated, Reason = snapshot.EndedReason,
                    Sequence = sequence, OccurredAt = e.StripeCreated, StripeEventId = e.Id,
                },
            };
            await EnqueueAsync(c, tx, payload, messageId, ct);
        }

        if (previous is null || messages.Count > 0 || !snapshot.SameAs(previous.Snapshot))
        {
            await c.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO subscription_mirror (subscription_id, user_id, snapshot, activated, ended, sequence, updated_at)
                VALUES (@SubscriptionId, @UserId, CAST(@Snapshot AS jsonb), @Activated, @Ended, @Sequence, now())
                ON CONFLICT (subscription_id) DO UPDATE SET user_id = EXCLUDED.user_id, snapshot = EXCLUDED.snapshot,
                    activated = EXCLUDED.activated, ended = EXCLUDED.ended, sequence = EXCLUDED.sequence, updated_at = now()
                """,
                new
                {
                    snapshot.SubscriptionId, snapshot.UserId, Snapshot = JsonSerializer.Serialize(snapshot, Json),
                    Activated = (previous?.Activated ?? false) || messages.Contains(SubscriptionMessage.Activated),
                    Ended = (previous?.Ended ?? false) || messages.Contains(SubscriptionMessage.Ended),
                    Sequence = sequence,
                }, tx, cancellationToken: ct));
        }
        return snapshot;
    }

    private async Task InvoicePaidAsync(NpgsqlConnection c, NpgsqlTransaction tx, string invoiceId, StoredEvent e, CancellationToken ct)
    {
        // One call for the invoice and its payments (Stripe's expand), one for the payment intent and its charge.
        var invoice = await calls.RunAsync(t => new InvoiceService(stripe).GetAsync(invoiceId,
            new InvoiceGetOptions { Expand = ["payments"] }, cancellationToken: t), ct);
        if (invoice.Status != "paid")
        {
            logger.LogInformation("invoice.paid {Event} for {Invoice}, which Stripe now says is {Status}: nothing to do", e.Id, invoiceId, invoice.Status);
            return;
        }

        var subscriptionId = SubscriptionIdOf(invoice);
        SubscriptionSnapshot? subscription = null;
        if (subscriptionId is not null)
        {
            subscription = await SyncSubscriptionAsync(c, tx, subscriptionId, e, ct);
        }
        var userId = subscription?.UserId ?? await UserOfInvoiceAsync(invoice, ct);
        var (paymentIntentId, chargeId, receiptUrl) = await PaymentOfInvoiceAsync(invoice, ct);
        // A renewal invoice bills the new period (the plan's line) and the overage of the period that just ended (metered
        // lines): the period the invoice pays for is the one that ends last — of the lines that charge: a change of billing
        // interval (yearly to monthly) credits the old price's unused time up to the old period's end, after the new
        // period's end, and that credit says nothing about the period now paid for.
        var lines = invoice.Lines?.Data ?? [];
        var line = (lines.Any(l => l.Amount >= 0) ? lines.Where(l => l.Amount >= 0) : lines)
            .OrderByDescending(l => l.Period?.End ?? DateTime.MinValue).FirstOrDefault();
        var periodStart = Utc(line?.Period?.Start ?? invoice.PeriodStart);
        var periodEnd = Utc(line?.Period?.End ?? invoice.PeriodEnd);
        var paidAt = invoice.StatusTransitions?.PaidAt is { } p ? Utc(p) : e.StripeCreated;

        if (invoice.AmountPaid > 0)
        {
            var plan = catalog.FindPlan(subscription?.PlanId);
            var description = plan is null
                ? invoice.Description ?? "Subscription payment"
                : $"{plan.Name} ({Cadence(subscription!.Interval, subscription.IntervalCount)}){(invoice.BillingReason == "subscription_update" ? ", plan change" : "")}"
                  + (InvoiceLines.OverageAmount(invoice) is > 0 and var overage ? $", with {Money(overage, invoice.Currency)} overage" : "");
            await c.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO payments (id, user_id, kind, amount, currency, status, description, invoice_id, payment_intent_id, charge_id,
                                      subscription_id, plan_id, invoice_url, receipt_url, paid_at)
                VALUES (@id, @userId, 'subscription', @amount, @currency, 'paid', @description, @id, @paymentIntentId, @chargeId,
                        @subscriptionId, @planId, @invoiceUrl, @receiptUrl, @paidAt)
                ON CONFLICT (id) DO NOTHING
                """,
                new
                {
                    id = invoice.Id, userId, amount = invoice.AmountPaid, currency = invoice.Currency, description, paymentIntentId, chargeId,
                    subscriptionId, planId = subscription?.PlanId, invoiceUrl = invoice.HostedInvoiceUrl, receiptUrl, paidAt,
                }, tx, cancellationToken: ct));
        }

        await EnqueueAsync(c, tx, new InvoicePaid
        {
            UserId = userId, InvoiceId = invoice.Id, CustomerId = invoice.CustomerId, SubscriptionId = subscriptionId, PlanId = subscription?.PlanId,
            BillingReason = invoice.BillingReason ?? "manual", AmountPaid = invoice.AmountPaid, Currency = invoice.Currency,
            PeriodStart = periodStart, PeriodEnd = periodEnd, PaymentIntentId = paymentIntentId, OccurredAt = paidAt, StripeEventId = e.Id,
        }, Outbox.MessageId(invoice.Id, nameof(InvoicePaid)), ct);
    }

    private async Task InvoicePaymentFailedAsync(NpgsqlConnection c, NpgsqlTransaction tx, string invoiceId, StoredEvent e, CancellationToken ct)
    {
        var invoice = await calls.RunAsync(t => new InvoiceService(stripe).GetAsync(invoiceId, cancellationToken: t), ct);
        var subscriptionId = SubscriptionIdOf(invoice);
        SubscriptionSnapshot? subscription = null;
        if (subscriptionId is not null)
        {
            subscription = await SyncSubscriptionAsync(c, tx, subscriptionId, e, ct);
        }
        // Only an invoice that is still open is waiting for a payment that failed. A late or reordered payment_failed about
        // an invoice paid meanwhile (or voided, or written off as uncollectible) would put a paid-up subscription into grace.
        if (invoice.Status != "open")
        {
            logger.LogInformation("invoice.payment_failed {Event} for {Invoice}, which Stripe now says is {Status}: nothing to publish", e.Id, invoiceId, invoice.Status);
            return;
        }
        var userId = subscription?.UserId ?? await UserOfInvoiceAsync(invoice, ct);
        await EnqueueAsync(c, tx, new InvoicePaymentFailed
        {
            UserId = userId, InvoiceId = invoice.Id, CustomerId = invoice.CustomerId, SubscriptionId = subscriptionId,
            AmountDue = invoice.AmountDue, Currency = invoice.Currency, AttemptCount = (int)invoice.AttemptCount,
            NextPaymentAttempt = invoice.NextPaymentAttempt is { } next ? Utc(next) : null, OccurredAt = e.StripeCreated, StripeEventId = e.Id,
        }, Outbox.MessageId($"{invoice.Id}#{invoice.AttemptCount}", nameof(InvoicePaymentFailed)), ct);
    }

    private async Task CheckoutAsync(NpgsqlConnection c, NpgsqlTransaction tx, string sessionId, StoredEvent e, CancellationToken ct)
    {
        var session = await calls.RunAsync(t => new global::Stripe.Checkout.SessionService(stripe).GetAsync(sessionId, cancellationToken: t), ct);
        if (session.Mode == "subscription")
        {
            if (session.SubscriptionId is not null)
            {
                await SyncSubscriptionAsync(c, tx, session.SubscriptionId, e, ct);
            }
            return;
        }
        if (session.Mode != "payment" || session.Metadata?.GetValueOrDefault("kind") != "token_pack")
        {
            return;
        }
        if (session.PaymentStatus != "paid")
        {
            // An asynchronous payment method still settling, or one that failed: nothing is bought (yet).
            logger.LogInformation("Checkout {Session} is {PaymentStatus} after {Type}: no tokens", sessionId, session.PaymentStatus, e.Type);
            return;
        }

        var userId = session.Metadata.GetValueOrDefault("userId") ?? session.ClientReferenceId
            ?? throw new InvalidOperationException($"Checkout session {sessionId} carries no userId.");
        var packId = session.Metadata.GetValueOrDefault("packId") ?? throw new InvalidOperationException($"Checkout session {sessionId} carries no packId.");
        // What the checkout sold (Wallet writes it into the session), not what the catalog says now: the pack may have
        // changed or gone while the checkout was open or a bank payment settled. Older sessions: the catalog.
        var tokens = long.TryParse(session.Metadata.GetValueOrDefault("tokens"), System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out var sold) && sold > 0
            ? sold
            : catalog.FindPack(packId)?.Tokens ?? throw new InvalidOperationException($"Unknown pack {packId} and no tokens on checkout {sessionId}.");
        int? expiresAfterDays = int.TryParse(session.Metadata.GetValueOrDefault("expiresAfterDays"), System.Globalization.NumberStyles.None,
            System.Globalization.CultureInfo.InvariantCulture, out var days) ? days : null; // likewise; older sessions: Wallet asks the catalog
        var (chargeId, receiptUrl) = session.PaymentIntentId is { } pi ? await ChargeOfPaymentIntentAsync(pi, ct) : (null, null);
        var paymentId = session.PaymentIntentId ?? session.Id;
        var packName = catalog.FindPack(packId)?.Name ?? packId;

        await c.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO payments (id, user_id, kind, amount, currency, status, description, payment_intent_id, charge_id, pack_id, tokens,
                                  checkout_session_id, receipt_url, paid_at)
            VALUES (@paymentId, @userId, 'token_pack', @amount, @currency, 'paid', @description, @paymentIntentId, @chargeId, @packId, @tokens,
                    @sessionId, @receiptUrl, @paidAt)
            ON CONFLICT (id) DO NOTHING
            """,
            new
            {
                paymentId, userId, amount = session.AmountTotal ?? 0, currency = session.Currency ?? catalog.Currency,
                description = $"{packName} token pack ({tokens:N0} tokens)", paymentIntentId = session.PaymentIntentId, chargeId, packId, tokens,
                sessionId, receiptUrl, paidAt = e.StripeCreated,
            }, tx, cancellationToken: ct));

        await EnqueueAsync(c, tx, new TokenPackPurchased
        {
            UserId = userId, PackId = packId, Tokens = tokens, ExpiresAfterDays = expiresAfterDays, CheckoutSessionId = session.Id,
            PaymentIntentId = session.PaymentIntentId,
            Amount = session.AmountTotal ?? 0, Currency = session.Currency ?? catalog.Currency, OccurredAt = e.StripeCreated, StripeEventId = e.Id,
        }, Outbox.MessageId(session.Id, nameof(TokenPackPurchased)), ct);
    }

    private sealed record ChargedPayment(string Id, string UserId, string Kind, long Amount, string? SubscriptionId, string? PackId, long? Tokens);

    /// <summary>
    /// The payment of a charge, locked. A charge of Billing's whose payment is not recorded yet waits for it (retried); a
    /// charge of something else on the same Stripe account (no Billing metadata on its payment intent or customer) would
    /// wait forever: null, and the event is done with.
    /// </summary>
    private async Task<ChargedPayment?> PaymentOfAsync(NpgsqlConnection c, NpgsqlTransaction tx, Charge charge, StoredEvent e, string what, CancellationToken ct)
    {
        var payment = await c.QuerySingleOrDefaultAsync<ChargedPayment>(new CommandDefinition(
            """
            SELECT id AS Id, user_id AS UserId, kind AS Kind, amount AS Amount, subscription_id AS SubscriptionId, pack_id AS PackId, tokens AS Tokens
            FROM payments WHERE charge_id = @chargeId OR (payment_intent_id IS NOT NULL AND payment_intent_id = @paymentIntentId)
            LIMIT 1 FOR UPDATE
            """, new { chargeId = charge.Id, paymentIntentId = charge.PaymentIntentId }, tx, cancellationToken: ct));
        if (payment is null)
        {
            if (await IsBillingsAsync(charge, ct))
            {
                throw new Billing.ServiceDefaults.Messaging.RetryLaterException($"No payment is recorded for charge {charge.Id} yet; the {what} waits for it.");
            }
            logger.LogInformation("Stripe event {EventId}: charge {ChargeId} is not a Billing payment (no Billing metadata); its {What} is ignored",
                e.Id, charge.Id, what);
        }
        return payment;
    }

    private async Task ChargeRefundedAsync(NpgsqlConnection c, NpgsqlTransaction tx, string chargeId, StoredEvent e, CancellationToken ct)
    {
        var charge = await calls.RunAsync(t => new ChargeService(stripe).GetAsync(chargeId, cancellationToken: t), ct);
        if (await PaymentOfAsync(c, tx, charge, e, "refund", ct) is not { } payment)
        {
            return;
        }

        // What was returned: the charge's refunded amount, less refunds that failed (a closed card) or were canceled — Stripe
        // returns their amount to the charge, and this holds whether or not its amount_refunded already shows it.
        var refunds = await calls.RunAsync(t => new RefundService(stripe).ListAsync(new RefundListOptions { Charge = chargeId, Limit = 100 },
            cancellationToken: t), ct);
        var undone = refunds.Data.Where(r => r.Status is "failed" or "canceled").OrderBy(r => r.Id, StringComparer.Ordinal).ToList();
        var refunded = Math.Min(payment.Amount, undone.Count == 0 ? charge.AmountRefunded
            : Math.Min(charge.AmountRefunded, refunds.Data.Except(undone).Sum(r => r.Amount)));
        await c.ExecuteAsync(new CommandDefinition(
            """
            UPDATE payments SET amount_refunded = @refunded, charge_id = COALESCE(charge_id, @chargeId), refunds_undone = @undone,
                status = CASE WHEN @refunded >= amount THEN 'refunded' WHEN @refunded > 0 THEN 'partially_refunded' ELSE 'paid' END
            WHERE id = @id
            """, new { refunded, chargeId, undone = undone.Count, id = payment.Id }, tx, cancellationToken: ct));

        await EnqueueAsync(c, tx, new PaymentRefunded
        {
            UserId = payment.UserId, PaymentId = payment.Id, Kind = payment.Kind, ChargeId = chargeId, PaymentIntentId = charge.PaymentIntentId,
            Amount = payment.Amount, AmountRefunded = refunded, Currency = charge.Currency, FullyRefunded = refunded >= payment.Amount,
            RefundsUndone = undone.Count,
            SubscriptionId = payment.SubscriptionId, PackId = payment.PackId, PackTokens = payment.Tokens, OccurredAt = e.StripeCreated, StripeEventId = e.Id,
        }, Outbox.MessageId(undone.Count == 0 ? $"{chargeId}#{refunded}" : $"{chargeId}#{refunded}#undone:{string.Join(',', undone.Select(r => r.Id))}",
            nameof(PaymentRefunded)), ct);
    }

    /// <summary>
    /// A chargeback. Opened: the payment records it and <see cref="PaymentDisputed"/> goes out (access and tokens end as
    /// for a full refund) — not for an inquiry (<c>warning_*</c>: the bank asks, no money has moved), which publishes it
    /// only if it turns into a chargeback (<c>funds_withdrawn</c>), nor for one Stripe already shows as won. Closed: the payment records how it ended and
    /// <see cref="PaymentDisputeClosed"/> goes out; a dispute won gives a pack's tokens back (Wallet), but a subscription it
    /// ended stays ended (the user subscribes again).
    /// </summary>
    private async Task ChargeDisputeAsync(NpgsqlConnection c, NpgsqlTransaction tx, string disputeId, StoredEvent e, CancellationToken ct)
    {
        var dispute = await calls.RunAsync(t => new DisputeService(stripe).GetAsync(disputeId, cancellationToken: t), ct);
        var charge = await calls.RunAsync(t => new ChargeService(stripe).GetAsync(dispute.ChargeId, cancellationToken: t), ct);
        if (await PaymentOfAsync(c, tx, charge, e, "dispute", ct) is not { } payment)
        {
            return;
        }
        await c.ExecuteAsync(new CommandDefinition(
            """
            UPDATE payments SET dispute_id = @disputeId, dispute_status = @status, disputed_at = COALESCE(disputed_at, @at) WHERE id = @id
            """, new { disputeId, status = dispute.Status, at = e.StripeCreated, id = payment.Id }, tx, cancellationToken: ct));
        if (e.Type == StripeEventTypes.ChargeDisputeClosed)
        {
            // Over: a pack's tokens come back when it was won (Wallet); a subscription it ended stays ended.
            await EnqueueAsync(c, tx, new PaymentDisputeClosed
            {
                UserId = payment.UserId, PaymentId = payment.Id, Kind = payment.Kind, DisputeId = disputeId, ChargeId = charge.Id,
                PaymentIntentId = charge.PaymentIntentId, Status = dispute.Status, Amount = payment.Amount, Currency = dispute.Currency ?? charge.Currency,
                SubscriptionId = payment.SubscriptionId, PackId = payment.PackId, PackTokens = payment.Tokens,
                OccurredAt = e.StripeCreated, StripeEventId = e.Id,
            }, Outbox.MessageId(disputeId, nameof(PaymentDisputeClosed)), ct);
            return;
        }
        // Only a chargeback that stands now ends anything: not an inquiry, and not one already won (its event may be applied
        // weeks late, after waiting for its payment) — the money is back by then.
        if (dispute.Status is not ("needs_response" or "under_review" or "lost"))
        {
            return;
        }
        await EnqueueAsync(c, tx, new PaymentDisputed
        {
            UserId = payment.UserId, PaymentId = payment.Id, Kind = payment.Kind, DisputeId = disputeId, ChargeId = charge.Id,
            PaymentIntentId = charge.PaymentIntentId, Amount = payment.Amount, AmountDisputed = dispute.Amount, Currency = dispute.Currency ?? charge.Currency,
            Reason = dispute.Reason, SubscriptionId = payment.SubscriptionId, PackId = payment.PackId, PackTokens = payment.Tokens,
            OccurredAt = e.StripeCreated, StripeEventId = e.Id,
        }, Outbox.MessageId(disputeId, nameof(PaymentDisputed)), ct);
    }

    /// <summary>
    /// Billing's charges carry its metadata: a token pack's on its payment intent (<c>kind</c>, <c>userId</c>), a
    /// subscription invoice's on its customer (<c>userId</c>, set when Subscriptions creates the customer).
    /// </summary>
    private async Task<bool> IsBillingsAsync(Charge charge, CancellationToken ct)
    {
        return (charge.PaymentIntentId is { Length: > 0 } intentId
                && Ours(await MetadataAsync(t => new PaymentIntentService(stripe).GetAsync(intentId, cancellationToken: t))))
            || (charge.CustomerId is { Length: > 0 } customerId
                && Ours(await MetadataAsync(async t => await new CustomerService(stripe).GetAsync(customerId, cancellationToken: t))));

        static bool Ours(IDictionary<string, string>? metadata) => metadata is not null && metadata.ContainsKey("userId");

        async Task<IDictionary<string, string>?> MetadataAsync<T>(Func<CancellationToken, Task<T>> get) where T : IHasMetadata
        {
            try
            {
                return (await calls.RunAsync(get, ct)).Metadata;
            }
            catch (StripeException ex) when (ex.HttpStatusCode == System.Net.HttpStatusCode.NotFound)
            {
                return null; // Stripe has no such object: nothing Billing could wait for
            }
        }
    }

    private async Task<SubscriptionSnapshot> SnapshotAsync(Subscription s, CancellationToken ct)
    {
        var item = s.PlanItem();
        var price = item.Price;
        var planId = catalog.FindByLookupKey(price?.LookupKey)?.Plan.Id
            ?? s.Metadata?.GetValueOrDefault("planId")
            ?? price?.Metadata?.GetValueOrDefault("planId");
        if (planId is null)
        {
            if (s.Metadata?.ContainsKey("userId") != true)
            {
                await UserOfCustomerAsync(s.CustomerId, ct); // not Billing's subscription when its customer is not Billing's either
            }
            throw new InvalidOperationException($"Subscription {s.Id}: price {price?.Id} (lookup key {price?.LookupKey}) is in no catalog plan.");
        }
        // A downgrade to another interval waits in a subscription schedule: what its next phase bills is what comes next.
        var scheduled = !string.IsNullOrEmpty(s.ScheduleId) && s.Status is not ("canceled" or "incomplete_expired")
            ? await ScheduledChangeAsync(s.ScheduleId, item, ct)
            : null;
        // A downgrade within the interval is charged from the next period; until then the user keeps the plan they paid
        // for (Subscriptions records it in the subscription's metadata when it schedules the downgrade) — while Stripe bills
        // the lower price it put on the item: a plan switched in the customer portal since then is the user's plan at once.
        if (EntitledPlans.Pending(s) is var (entitled, until) && catalog.FindPlan(entitled) is not null)
        {
            scheduled ??= new ScheduledPlanChange
            {
                PlanId = planId, PriceId = price?.Id ?? "", Interval = price?.Recurring?.Interval ?? "month",
                IntervalCount = (int)(price?.Recurring?.IntervalCount ?? 1), EffectiveAt = until,
            };
            planId = entitled;
        }
        var userId = s.Metadata?.GetValueOrDefault("userId") ?? await UserOfCustomerAsync(s.CustomerId, ct);
        return new SubscriptionSnapshot
        {
            SubscriptionId = s.Id, UserId = userId, CustomerId = s.CustomerId, PlanId = planId, PriceId = price?.Id ?? "",
            Interval = price?.Recurring?.Interval ?? "month", IntervalCount = (int)(price?.Recurring?.IntervalCount ?? 1), Status = s.Status,
            CurrentPeriodStart = Utc(item.CurrentPeriodStart), CurrentPeriodEnd = Utc(item.CurrentPeriodEnd), CancelAtPeriodEnd = s.CancelAtPeriodEnd,
            TrialEnd = s.TrialEnd is { } trial ? Utc(trial) : null, StartedAt = Utc(s.StartDate),
            EndedAt = s.EndedAt is { } ended ? Utc(ended) : null, EndedReason = s.CancellationDetails?.Reason,
            ScheduledChange = scheduled,
        };
    }

    /// <summary>
    /// The price a subscription schedule moves the subscription to when its current period ends (Subscriptions schedules a
    /// downgrade to another billing interval this way), or null when the schedule changes nothing then.
    /// </summary>
    private async Task<ScheduledPlanChange?> ScheduledChangeAsync(string scheduleId, SubscriptionItem item, CancellationToken ct)
    {
        var schedule = await calls.RunAsync(t => new SubscriptionScheduleService(stripe).GetAsync(scheduleId,
            new SubscriptionScheduleGetOptions { Expand = ["phases.items.price"] }, cancellationToken: t), ct);
        if (!SubscriptionSchedules.InForce(schedule) || SubscriptionSchedules.NextChange(schedule, item) is not { } next)
        {
            return null;
        }
        var phaseItem = next.Items.FirstOrDefault(i => !SubscriptionItems.IsMetered(i.Price)) ?? next.Items[0];
        var price = phaseItem.Price ?? await calls.RunAsync(t => new PriceService(stripe).GetAsync(phaseItem.PriceId, cancellationToken: t), ct);
        var planId = catalog.FindByLookupKey(price.LookupKey)?.Plan.Id ?? next.Metadata?.GetValueOrDefault("planId") ?? price.Metadata?.GetValueOrDefault("planId");
        return planId is null ? null : new ScheduledPlanChange
        {
            PlanId = planId, PriceId = price.Id, Interval = price.Recurring?.Interval ?? "month", IntervalCount = (int)(price.Recurring?.IntervalCount ?? 1),
            EffectiveAt = Utc(next.StartDate),
        };
    }

    private async Task<string> UserOfInvoiceAsync(Invoice invoice, CancellationToken ct) =>
        invoice.Parent?.SubscriptionDetails?.Metadata?.GetValueOrDefault("userId") ?? await UserOfCustomerAsync(invoice.CustomerId, ct);

    private async Task<string> UserOfCustomerAsync(string customerId, CancellationToken ct)
    {
        var customer = await calls.RunAsync(t => new CustomerService(stripe).GetAsync(customerId, cancellationToken: t), ct);
        return customer.Metadata?.GetValueOrDefault("userId")
            ?? throw new NotBillingsException($"Customer {customerId} carries no userId metadata: not one of Billing's customers.");
    }

    /// <summary>
    /// The event is about another product's objects on the same Stripe account (no Billing metadata anywhere): nothing for
    /// Billing to do, and nothing to retry. Thrown before the event's transaction has written anything.
    /// </summary>
    private sealed class NotBillingsException(string message) : Exception(message);

    private async Task<(string? PaymentIntentId, string? ChargeId, string? ReceiptUrl)> PaymentOfInvoiceAsync(Invoice invoice, CancellationToken ct)
    {
        var payments = invoice.Payments?.Data
            ?? (await calls.RunAsync(t => new InvoicePaymentService(stripe).ListAsync(new InvoicePaymentListOptions { Invoice = invoice.Id }, cancellationToken: t), ct)).Data;
        // An invoice keeps its earlier attempts (a canceled or still open payment intent) next to the one that paid it.
        var paymentIntentId = payments.Where(p => p.Status == "paid").Select(p => p.Payment?.PaymentIntentId).FirstOrDefault(id => id is not null);
        if (paymentIntentId is null)
        {
            return (null, null, null);
        }
        var (chargeId, receiptUrl) = await ChargeOfPaymentIntentAsync(paymentIntentId, ct);
        return (paymentIntentId, chargeId, receiptUrl);
    }

    private async Task<(string? ChargeId, string? ReceiptUrl)> ChargeOfPaymentIntentAsync(string paymentIntentId, CancellationToken ct)
    {
        var intent = await calls.RunAsync(t => new PaymentIntentService(stripe).GetAsync(paymentIntentId,
            new PaymentIntentGetOptions { Expand = ["latest_charge"] }, cancellationToken: t), ct);
        if (intent.LatestChargeId is null)
        {
            return (null, null);
        }
        var charge = intent.LatestCharge
            ?? await calls.RunAsync(t => new ChargeService(stripe).GetAsync(intent.LatestChargeId, cancellationToken: t), ct);
        return (charge.Id, charge.ReceiptUrl);
    }

    private static Task EnqueueAsync(NpgsqlConnection c, NpgsqlTransaction tx, object message, Guid id, CancellationToken ct) =>
        Outbox.EnqueueObjectAsync(c, tx, message, id, ct);

    private static string? SubscriptionIdOf(Invoice invoice) =>
        invoice.Parent?.Type == "subscription_details" ? invoice.Parent.SubscriptionDetails?.SubscriptionId : null;

    /// <summary>Stripe's zero- and three-decimal currencies; every other one has two decimals.</summary>
    private static readonly Dictionary<string, int> Decimals = new(StringComparer.OrdinalIgnoreCase)
    {
        ["bif"] = 0, ["clp"] = 0, ["djf"] = 0, ["gnf"] = 0, ["jpy"] = 0, ["kmf"] = 0, ["krw"] = 0, ["mga"] = 0, ["pyg"] = 0, ["rwf"] = 0,
        ["ugx"] = 0, ["vnd"] = 0, ["vuv"] = 0, ["xaf"] = 0, ["xof"] = 0, ["xpf"] = 0,
        ["bhd"] = 3, ["jod"] = 3, ["kwd"] = 3, ["omr"] = 3, ["tnd"] = 3,
    };

    /// <summary>An amount given in the currency's minor unit, e.g. <c>$0.02</c>, <c>0.02 EUR</c>, <c>3 JPY</c> or <c>0.250 KWD</c>.</summary>
    private static string Money(long amount, string currency)
    {
        var decimals = Decimals.GetValueOrDefault(currency, 2);
        var units = (amount / (decimal)Math.Pow(10, decimals)).ToString("F" + decimals, CultureInfo.InvariantCulture);
        return string.Equals(currency, "usd", StringComparison.OrdinalIgnoreCase) ? "$" + units : $"{units} {currency.ToUpperInvariant()}";
    }

    private static string Cadence(string interval, int count) => (interval, count) switch
    {
        ("month", 1) => "monthly",
        ("month", 3) => "quarterly",
        ("year", 1) => "yearly",
        _ => $"every {count} {interval}s",
    };
}
