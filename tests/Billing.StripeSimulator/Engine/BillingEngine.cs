using System.Globalization;
using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Infrastructure;
using Billing.StripeSimulator.Rendering;

namespace Billing.StripeSimulator.Engine;

public sealed record ChargeOutcome(bool Succeeded, string? Code, string? DeclineCode, string? Message);

/// <summary>
/// Stripe's billing behaviour: checkout completion, invoices and charges, renewals, retries, plan changes,
/// cancellations and refunds, each emitting Stripe's events. Every method expects <see cref="SimState.Gate"/> held.
/// </summary>
public sealed partial class BillingEngine(SimState state, StripeJson json)
{
    public const string CardSucceeds = "4242424242424242";
    public const string CardDeclined = "4000000000000002";
    public const string CardInsufficientFunds = "4000000000009995";
    public const string CardFailsLater = "4000000000000341";
    public const string CardThreeDSecure = "4000002760003184";
    public const string BankDebit = "bank_debit";

    private static readonly long[] RetryDelaysDays = [3, 5, 7];

    public SimState State => state;

    // ---------------------------------------------------------------- cards

    private static readonly ChargeOutcome NoPaymentMethod =
        new(false, "resource_missing", null, "This customer has no attached payment source or default payment method.");

    /// <summary>How a charge of the customer's payment method goes; one without any (a trial started without a card) cannot pay.</summary>
    public static ChargeOutcome DecideFor(Customer customer, bool offSession) =>
        customer.PaymentMethodId is null ? NoPaymentMethod : Decide(customer.Card, offSession);

    public static ChargeOutcome Decide(string? card, bool offSession)
    {
        card = NormalizeCard(card ?? CardSucceeds);
        return card switch
        {
            CardDeclined => new(false, "card_declined", "generic_decline", "Your card was declined."),
            CardInsufficientFunds => new(false, "card_declined", "insufficient_funds", "Your card has insufficient funds."),
            CardFailsLater when offSession => new(false, "card_declined", "generic_decline", "Your card was declined."),
            BankDebit => new(true, null, null, null),
            _ when !IsValidCardNumber(card) => new(false, "incorrect_number", null, "Your card number is incorrect."),
            _ => new(true, null, null, null),
        };
    }

    public static string NormalizeCard(string card) => card == BankDebit ? card : new string(card.Where(char.IsDigit).ToArray());

    private static bool IsValidCardNumber(string digits)
    {
        if (digits.Length is < 12 or > 19)
        {
            return false;
        }
        var sum = 0;
        for (var i = 0; i < digits.Length; i++)
        {
            var d = digits[digits.Length - 1 - i] - '0';
            if (i % 2 == 1)
            {
                d *= 2;
                if (d > 9)
                {
                    d -= 9;
                }
            }
            sum += d;
        }
        return sum % 10 == 0;
    }

    private static string Last4(string? card) => card is { Length: >= 4 } && card != BankDebit ? card[^4..] : "6789";

    // ---------------------------------------------------------------- customers

    public Customer CreateCustomer(string? email, string? name, Dictionary<string, string>? metadata)
    {
        var customer = new Customer
        {
            Id = state.NewId("cus_", 14),
            Created = state.Now,
            Email = email,
            Name = name,
            Metadata = metadata ?? new(),
        };
        state.Customers[customer.Id] = customer;
        state.Emit("customer.created", json.Customer(customer));
        return customer;
    }

    public void SetCard(Customer customer, string card)
    {
        var previous = json.Customer(customer);
        customer.Card = NormalizeCard(card);
        customer.PaymentMethodId = state.NewId("pm_");
        var now = json.Customer(customer);
        state.Emit("customer.updated", now, new JsonObject { ["invoice_settings"] = previous["invoice_settings"]!.DeepClone() });
    }

    // ---------------------------------------------------------------- checkout

    /// <summary>Completes a checkout session that the card (or bank debit) paid; returns the decline, if any.</summary>
    public ChargeOutcome CompleteCheckout(CheckoutSession session, string card)
    {
        if (session.Status != "open")
        {
            throw StripeError.Invalid(null, "This Checkout Session is no longer active.", "checkout_session_inactive");
        }
        card = NormalizeCard(card);
        var bankDebit = card == BankDebit;
        var needsPayment = session.AmountTotal > 0 && !(session.Mode == "subscription" && session.TrialPeriodDays is > 0);
        // payment_method_collection=if_required: a trial (nothing due now) starts without a card when none is given.
        var withoutCard = card.Length == 0 && !needsPayment && session.PaymentMethodCollection == "if_required";
        if (needsPayment && !bankDebit)
        {
            var outcome = Decide(card, offSession: false);
            if (!outcome.Succeeded)
            {
                return outcome;
            }
        }
        else if (!bankDebit && !withoutCard && !IsValidCardNumber(card))
        {
            return new(false, "incorrect_number", null, "Your card number is incorrect.");
        }

        Customer? customer = session.CustomerId is null ? null : state.Customers[session.CustomerId];
        if (customer is null && session.Mode == "subscription")
        {
            customer = CreateCustomer(session.CustomerEmail ?? $"{session.ClientReferenceId ?? "customer"}@example.test", null, null);
            session.CustomerId = customer.Id;
        }
        if (customer is not null && !withoutCard)
        {
            customer.Card = card;
            customer.PaymentMethodId ??= state.NewId("pm_");
        }

        if (session.Mode == "subscription")
        {
            CompleteSubscriptionCheckout(session, customer!, card, bankDebit);
        }
        else
        {
            CompletePaymentCheckout(session, customer, card, bankDebit);
        }
        return new(true, null, null, null);
    }

    private void CompleteSubscriptionCheckout(CheckoutSession session, Customer customer, string card, bool bankDebit)
    {
        var price = state.Prices[session.LineItems.First(li => !state.Prices[li.PriceId].IsMetered).PriceId];
        var now = state.Now;
        var trialEnd = session.TrialPeriodDays is > 0 ? now + session.TrialPeriodDays.Value * 86400 : (long?)null;
        var periodEnd = trialEnd ?? Calendar.NextBoundary(now, price.Interval!, price.IntervalCount, now);
        var sub = new Subscription
        {
            Id = state.NewId("sub_"),
            Created = now,
            CustomerId = customer.Id,
            Currency = price.Currency,
            StartDate = now,
            BillingCycleAnchor = trialEnd ?? now,
            TrialStart = trialEnd is null ? null : now,
            TrialEnd = trialEnd,
            Status = trialEnd is not null ? "trialing" : bankDebit ? "incomplete" : "active",
            MissingPaymentMethod = session.MissingPaymentMethod,
            Metadata = new Dictionary<string, string>(session.SubscriptionMetadata),
        };
        foreach (var line in session.LineItems)
        {
            sub.Items.Add(new SubscriptionItem
            {
                Id = state.NewId("si_", 14),
                Created = now,
                PriceId = line.PriceId,
                Quantity = line.Quantity,
                Metered = state.Prices[line.PriceId].IsMetered,
                UsageStart = now,
                PeriodStart = now,
                PeriodEnd = periodEnd,
            });
        }
        state.Subscriptions[sub.Id] = sub;

        // The licensed item is billed for its first period (or trial); a metered one bills in arrears: a $0 line for now.
        var invoiceLines = sub.Items.Select(item => item.Metered
                ? UsageLine(item, state.Prices[item.PriceId], 0, now, periodEnd)
                : trialEnd is not null
                    ? NewLine(0, $"Trial period for {state.Products[price.ProductId].Name}", price.Id, item.Quantity, now, trialEnd.Value, false, item.Id)
                    : NewLine(price.AmountFor(item.Quantity), LineDescription(price, item.Quantity), price.Id, item.Quantity, now, periodEnd, false, item.Id))
            .ToList();
        var invoice = NewInvoice(sub, "subscription_create", invoiceLines, now, now);
        sub.LatestInvoiceId = invoice.Id;

        session.SubscriptionId = sub.Id;
        session.InvoiceId = invoice.Id;
        state.Emit("customer.subscription.created", json.Subscription(sub));
        EmitInvoiceCreatedAndFinalized(invoice);

        if (bankDebit)
        {
            var pi = StartPayment(invoice, customer, card);
            pi.Status = "processing";
            session.AwaitingSettlement = true;
            session.PaymentStatus = "unpaid";
        }
        else if (invoice.AmountDue == 0)
        {
            MarkPaidWithoutPayment(invoice);
            state.Emit("invoice.paid", json.Invoice(invoice));
            state.Emit("invoice.payment_succeeded", json.Invoice(invoice));
            session.PaymentStatus = "no_payment_required";
        }
        else
        {
            var (_, _) = AttemptInvoicePayment(invoice, offSession: false, emitSubscriptionUpdate: false);
            session.PaymentStatus = "paid";
        }
        session.Status = "complete";
        state.Emit("checkout.session.completed", json.CheckoutSession(session));
    }

    private void CompletePaymentCheckout(CheckoutSession session, Customer? customer, string card, bool bankDebit)
    {
        var now = state.Now;
        var description = string.Join(", ", session.LineItems.Select(li => state.Products[state.Prices[li.PriceId].ProductId].Name));
        var pi = new PaymentIntent
        {
            Id = state.NewId("pi_"),
            Created = now,
            Amount = session.AmountTotal,
            Currency = session.Currency,
            CustomerId = customer?.Id,
            Description = description,
            Metadata = new Dictionary<string, string>(session.PaymentIntentMetadata),
            PaymentMethodId = customer?.PaymentMethodId ?? state.NewId("pm_"),
            PaymentMethodType = bankDebit ? "us_bank_account" : "card",
        };
        state.PaymentIntents[pi.Id] = pi;
        session.PaymentIntentId = pi.Id;
        session.Status = "complete";
        if (bankDebit)
        {
            pi.Status = "processing";
            session.AwaitingSettlement = true;
            session.PaymentStatus = "unpaid";
            state.Emit("payment_intent.processing", json.PaymentIntent(pi));
        }
        else
        {
            var charge = NewCharge(pi, card, new ChargeOutcome(true, null, null, null));
            pi.Status = "succeeded";
            pi.AmountReceived = pi.Amount;
            session.PaymentStatus = "paid";
            state.Emit("payment_intent.succeeded", json.PaymentIntent(pi));
            state.Emit("charge.succeeded", json.Charge(charge));
        }
        state.Emit("checkout.session.completed", json.CheckoutSession(session));
    }

    /// <summary>A delayed (bank debit) payment of a completed session settles or fails.</summary>
    public void SettleCheckout(CheckoutSession session, bool succeed)
    {
        if (!session.AwaitingSettlement)
        {
            throw StripeError.Invalid(null, "This Checkout Session has no payment awaiting settlement.");
        }
        session.AwaitingSettlement = false;
        if (session.Mode == "subscription")
        {
            var invoice = state.Invoices[session.InvoiceId!];
            var sub = state.Subscriptions[session.SubscriptionId!];
            var previous = json.Subscription(sub);
            var customer = state.Customers[sub.CustomerId];
            var (paid, _) = AttemptInvoicePayment(invoice, offSession: false, emitSubscriptionUpdate: false, forceOutcome: succeed
                ? new ChargeOutcome(true, null, null, null)
                : new ChargeOutcome(false, "payment_method_provider_decline", null, "The customer's bank account could not be debited."));
            if (paid)
            {
                sub.Status = "active";
                state.Emit("customer.subscription.updated", json.Subscription(sub), Diff(previous, json.Subscription(sub)));
            }
            else
            {
                invoice.NextPaymentAttempt = null;
                sub.Status = "incomplete_expired";
                sub.EndedAt = state.Now;
                state.Emit("customer.subscription.deleted", json.Subscription(sub), Diff(previous, json.Subscription(sub)));
            }
            customer.Card = succeed ? customer.Card : null;
        }
        else
        {
            var pi = state.PaymentIntents[session.PaymentIntentId!];
            var outcome = succeed
                ? new ChargeOutcome(true, null, null, null)
                : new ChargeOutcome(false, "payment_method_provider_decline", null, "The customer's bank account could not be debited.");
            var charge = NewCharge(pi, BankDebit, outcome);
            if (succeed)
            {
                pi.Status = "succeeded";
                pi.AmountReceived = pi.Amount;
                state.Emit("payment_intent.succeeded", json.PaymentIntent(pi));
                state.Emit("charge.succeeded", json.Charge(charge));
            }
            else
            {
                pi.Status = "requires_payment_method";
                SetLastError(pi, outcome);
                state.Emit("payment_intent.payment_failed", json.PaymentIntent(pi));
                state.Emit("charge.failed", json.Charge(charge));
            }
        }
        session.PaymentStatus = succeed ? "paid" : "unpaid";
        state.Emit(succeed ? "checkout.session.async_payment_succeeded" : "checkout.session.async_payment_failed", json.CheckoutSession(session));
    }

    public void ExpireCheckout(CheckoutSession session)
    {
        if (session.Status != "open")
        {
            throw StripeError.Invalid(null, $"Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{session.Status}\".");
        }
        session.Status = "expired";
        state.Emit("checkout.session.expired", json.CheckoutSession(session));
    }

    // ---------------------------------------------------------------- invoices and payments

    public static string LineDescription(Price price, decimal quantity, string? productName = null) =>
        $"{StripeJson.DecimalString(quantity)} × {productName ?? "Subscription"} (at {FormatAmount(price.UnitPrice, price.Currency)} / {IntervalText(price)})";

    /// <summary>An amount in minor units for people: <c>$5.00</c>, or <c>$0.005</c> for a fractional unit amount.</summary>
    public static string FormatAmount(decimal amount, string currency)
    {
        var major = (amount / 100m).ToString("0.00##########", CultureInfo.InvariantCulture);
        return currency == "usd" ? "$" + major : major + " " + currency.ToUpperInvariant();
    }

    public static string IntervalText(Price price) => price.IntervalCount == 1 ? price.Interval ?? "once" : $"every {price.IntervalCount} {price.Interval}s";

    public InvoiceLine NewLine(long amount, string description, string? priceId, long quantity, long start, long end, bool proration, string? itemId,
        decimal? quantityDecimal = null, decimal? unitAmountDecimal = null) => new()
    {
        Id = state.NewId("il_"),
        Amount = amount,
        Description = description,
        PriceId = priceId,
        Quantity = quantity,
        PeriodStart = start,
        PeriodEnd = end,
        Proration = proration,
        SubscriptionItemId = itemId,
        QuantityDecimal = quantityDecimal,
        UnitAmountDecimal = unitAmountDecimal,
    };

    private string LineDescriptionFor(Price price, decimal quantity) => LineDescription(price, quantity, state.Products[price.ProductId].Name);

    private Invoice NewInvoice(Subscription sub, string reason, List<InvoiceLine> lines, long periodStart, long periodEnd, bool preview = false)
    {
        var invoice = new Invoice
        {
            Id = preview ? "upcoming_" + state.NewId("in_") : state.NewId("in_"),
            Created = state.Now,
            CustomerId = sub.CustomerId,
            SubscriptionId = sub.Id,
            SubscriptionMetadata = new Dictionary<string, string>(sub.Metadata),
            BillingReason = reason,
            Currency = sub.Currency,
            Lines = lines,
            PeriodStart = periodStart,
            PeriodEnd = periodEnd,
            IsPreview = preview,
        };
        if (!preview)
        {
            state.Invoices[invoice.Id] = invoice;
        }
        return invoice;
    }

    private void EmitInvoiceCreatedAndFinalized(Invoice invoice)
    {
        state.Emit("invoice.created", json.Invoice(invoice));
        invoice.Status = "open";
        invoice.FinalizedAt = state.Now;
        invoice.Number = state.NextInvoiceNumber();
        state.Emit("invoice.finalized", json.Invoice(invoice));
    }

    private void MarkPaidWithoutPayment(Invoice invoice)
    {
        invoice.Status = "paid";
        invoice.PaidAt = state.Now;
        invoice.AmountPaid = 0;
        invoice.NextPaymentAttempt = null;
    }

    private PaymentIntent StartPayment(Invoice invoice, Customer customer, string? card)
    {
        if (invoice.PaymentIntentId is not null)
        {
            return state.PaymentIntents[invoice.PaymentIntentId];
        }
        var pi = new PaymentIntent
        {
            Id = state.NewId("pi_"),
            Created = state.Now,
            Amount = invoice.AmountDue,
            Currency = invoice.Currency,
            CustomerId = customer.Id,
            Description = invoice.BillingReason == "subscription_create" ? "Subscription creation" : "Subscription update",
            PaymentMethodId = customer.PaymentMethodId,
            PaymentMethodType = card == BankDebit ? "us_bank_account" : "card",
        };
        state.PaymentIntents[pi.Id] = pi;
        invoice.PaymentIntentId = pi.Id;
        var payment = new InvoicePayment
        {
            Id = state.NewId("inpay_"),
            Created = state.Now,
            InvoiceId = invoice.Id,
            PaymentIntentId = pi.Id,
            AmountRequested = invoice.AmountDue,
            Currency = invoice.Currency,
        };
        state.InvoicePayments[payment.Id] = payment;
        invoice.InvoicePaymentId = payment.Id;
        return pi;
    }

    private Charge NewCharge(PaymentIntent pi, string? card, ChargeOutcome outcome)
    {
        var charge = new Charge
        {
            Id = state.NewId("ch_"),
            Created = state.Now,
            Amount = pi.Amount,
            Currency = pi.Currency,
            CustomerId = pi.CustomerId,
            PaymentIntentId = pi.Id,
            Status = outcome.Succeeded ? "succeeded" : "failed",
            FailureCode = outcome.Code,
            FailureMessage = outcome.Message,
            DeclineCode = outcome.DeclineCode,
            Description = pi.Description,
            Metadata = new Dictionary<string, string>(pi.Metadata),
            PaymentMethodId = pi.PaymentMethodId,
            Last4 = Last4(card),
            PaymentMethodType = pi.PaymentMethodType,
        };
        state.Charges[charge.Id] = charge;
        pi.LatestChargeId = charge.Id;
        return charge;
    }

    private static void SetLastError(PaymentIntent pi, ChargeOutcome outcome)
    {
        pi.LastErrorCode = outcome.Code;
        pi.LastErrorDeclineCode = outcome.DeclineCode;
        pi.LastErrorMessage = outcome.Message;
    }

    /// <summary>Charges the customer's payment method for an open invoice and emits what Stripe emits.</summary>
    public (bool Paid, ChargeOutcome Outcome) AttemptInvoicePayment(Invoice invoice, bool offSession, bool emitSubscriptionUpdate, ChargeOutcome? forceOutcome = null)
    {
        var customer = state.Customers[invoice.CustomerId];
        var sub = invoice.SubscriptionId is null ? null : state.Subscriptions[invoice.SubscriptionId];
        var previousSub = sub is null ? null : json.Subscription(sub);
        invoice.Attempted = true;
        invoice.AttemptCount++;
        if (invoice.AmountDue == 0)
        {
            MarkPaidWithoutPayment(invoice);
            state.Emit("invoice.paid", json.Invoice(invoice));
            state.Emit("invoice.payment_succeeded", json.Invoice(invoice));
            return (true, new ChargeOutcome(true, null, null, null));
        }
        var pi = StartPayment(invoice, customer, customer.Card);
        var outcome = forceOutcome ?? DecideFor(customer, offSession);
        pi.PaymentMethodId = customer.PaymentMethodId;
        var charge = NewCharge(pi, customer.Card, outcome);
        var invoicePayment = state.InvoicePayments[invoice.InvoicePaymentId!];
        if (outcome.Succeeded)
        {
            pi.Status = "succeeded";
            pi.AmountReceived = pi.Amount;
            pi.LastErrorCode = pi.LastErrorMessage = pi.LastErrorDeclineCode = null;
            invoice.Status = "paid";
            invoice.AmountPaid = invoice.AmountDue;
            invoice.PaidAt = state.Now;
            invoice.NextPaymentAttempt = null;
            invoicePayment.Status = "paid";
            invoicePayment.AmountPaid = invoice.AmountDue;
            invoicePayment.PaidAt = state.Now;
            state.Emit("invoice.paid", json.Invoice(invoice));
            state.Emit("invoice.payment_succeeded", json.Invoice(invoice));
            state.Emit("payment_intent.succeeded", json.PaymentIntent(pi));
            state.Emit("charge.succeeded", json.Charge(charge));
            if (sub is not null && sub.Status is "past_due" or "unpaid" && emitSubscriptionUpdate)
            {
                sub.Status = "active";
                state.Emit("customer.subscription.updated", json.Subscription(sub), Diff(previousSub!, json.Subscription(sub)));
            }
            return (true, outcome);
        }

        pi.Status = "requires_payment_method";
        SetLastError(pi, outcome);
        var attempt = invoice.AttemptCount;
        invoice.NextPaymentAttempt = sub is not null && attempt <= RetryDelaysDays.Length && !sub.IsEnded
            ? state.Now + RetryDelaysDays[attempt - 1] * 86400
            : null;
        state.Emit("payment_intent.payment_failed", json.PaymentIntent(pi));
        state.Emit("charge.failed", json.Charge(charge));
        state.Emit("invoice.payment_failed", json.Invoice(invoice));
        if (sub is not null && emitSubscriptionUpdate)
        {
            if (invoice.NextPaymentAttempt is null && invoice.BillingReason != "subscription_update")
            {
                EndSubscription(sub, "payment_failed", previousSub!);
            }
            else if (sub.Status is "active" or "trialing")
            {
                sub.Status = "past_due";
                state.Emit("customer.subscription.updated", json.Subscription(sub), Diff(previousSub!, json.Subscription(sub)));
            }
        }
        return (false, outcome);
    }

    // ---------------------------------------------------------------- time

    /// <summary>Processes, in time order, everything due up to <paramref name="target"/>.</summary>
    public int ProcessDue(long target)
    {
        var processed = 0;
        while (processed < 100_000)
        {
            var next = NextDue(target);
            if (next is null)
            {
                break;
            }
            state.At(next.Value.At, next.Value.Action);
            processed++;
        }
        return processed;
    }

    private (long At, Action Action)? NextDue(long target)
    {
        (long At, int Rank, Action Action)? best = null;
        void Consider(long at, int rank, Action action)
        {
            if (at <= target && (best is null || at < best.Value.At || (at == best.Value.At && rank < best.Value.Rank)))
            {
                best = (at, rank, action);
            }
        }

        foreach (var session in state.CheckoutSessions.Values)
        {
            if (session.Status == "open")
            {
                Consider(session.ExpiresAt, 0, () => ExpireCheckout(session));
            }
        }
        foreach (var sub in state.Subscriptions.Values)
        {
            if (sub.Status == "trialing" && sub.TrialEnd is { } trialEnd && !sub.TrialWillEndSent)
            {
                Consider(Math.Max(trialEnd - 3 * 86400, sub.TrialStart ?? 0), 1, () =>
                {
                    sub.TrialWillEndSent = true;
                    state.Emit("customer.subscription.trial_will_end", json.Subscription(sub));
                });
            }
            if (RenewalAt(sub) is { } renewal)
            {
                Consider(renewal, sub.Status == "trialing" ? 2 : 3, () => EndPeriod(sub));
            }
        }
        foreach (var schedule in state.SubscriptionSchedules.Values)
        {
            // A phase that ends when its subscription renews changes over in EndPeriod, as part of the renewal.
            if (schedule.Status == "active" && schedule.SubscriptionId is { } subId && state.Subscriptions.TryGetValue(subId, out var scheduled)
                && !scheduled.IsEnded && RenewalAt(scheduled) != schedule.CurrentPhase.EndDate)
            {
                Consider(schedule.CurrentPhase.EndDate, 3, () => EndSchedulePhase(schedule));
            }
        }
        foreach (var invoice in state.Invoices.Values)
        {
            if (invoice.Status == "open" && invoice.NextPaymentAttempt is { } retryAt)
            {
                Consider(retryAt, 4, () => RetryInvoice(invoice));
            }
        }
        return best is null ? null : (best.Value.At, best.Value.Action);
    }

    private void RetryInvoice(Invoice invoice)
    {
        var sub = invoice.SubscriptionId is null ? null : state.Subscriptions[invoice.SubscriptionId];
        if (sub is null || sub.IsEnded)
        {
            invoice.NextPaymentAttempt = null;
            return;
        }
        AttemptInvoicePayment(invoice, offSession: true, emitSubscriptionUpdate: true);
    }

    /// <summary>When the subscription's trial or current period ends (and so renews), if it does.</summary>
    private static long? RenewalAt(Subscription sub) => sub.Status switch
    {
        "trialing" => sub.TrialEnd,
        "active" or "past_due" or "unpaid" => sub.Item.PeriodEnd,
        _ => null,
    };

    /// <summary>A trial or billing period ends: cancel if asked to, otherwise start the next period and bill it. When the
    /// subscription's schedule has a phase ending now, the next phase's items are billed instead, or the schedule ends.</summary>
    private void EndPeriod(Subscription sub)
    {
        var previous = json.Subscription(sub);
        SubscriptionSchedule? advancing = null;
        JsonObject? scheduleBefore = null;
        if (ScheduleOf(sub) is { } schedule && schedule.CurrentPhase.EndDate == state.Now)
        {
            if (schedule.CurrentPhaseIndex + 1 < schedule.Phases.Count)
            {
                advancing = schedule;
                scheduleBefore = json.SubscriptionSchedule(schedule);
            }
            else if (schedule.EndBehavior == "cancel")
            {
                CompleteSchedule(schedule, sub, previous);
                return;
            }
            else
            {
                ReleaseSchedule(schedule, preserveCancelDate: false, emitSubscriptionUpdate: false); // the renewal's update carries it
            }
        }
        if (sub.CancelAtPeriodEnd || (sub.CancelAt is { } cancelAt && cancelAt <= state.Now))
        {
            BillFinalUsage(sub, "subscription_cycle");
            EndSubscription(sub, sub.CancellationReason ?? "cancellation_requested", previous);
            return;
        }
        var wasTrial = sub.Status == "trialing";
        var noPaymentMethod = wasTrial && state.Customers[sub.CustomerId].PaymentMethodId is null;
        if (noPaymentMethod && sub.MissingPaymentMethod == "cancel")
        {
            // trial_settings.end_behavior.missing_payment_method=cancel: the trial ends the subscription, with no invoice.
            EndSubscription(sub, "cancellation_requested", previous); // the reason Stripe gives here: unverified
            return;
        }
        if (noPaymentMethod && sub.MissingPaymentMethod == "pause")
        {
            sub.Status = "paused";
            var paused = json.Subscription(sub);
            state.Emit("customer.subscription.paused", paused, Diff(previous, paused));
            return;
        }
        var item = sub.Item;
        var oldStart = item.PeriodStart;
        var oldEnd = item.PeriodEnd;
        // Metered items bill the period that just ended at the prices they had in it (before a phase changes them);
        // usage during a trial is not billed.
        var usage = TakeUsage(sub, oldEnd, bill: !wasTrial, includeZero: true);
        if (advancing is not null)
        {
            EnterPhase(sub, advancing.Phases[advancing.CurrentPhaseIndex + 1], oldEnd);
        }
        var price = state.Prices[item.PriceId];
        item.PeriodStart = oldEnd;
        item.PeriodEnd = Calendar.NextBoundary(sub.BillingCycleAnchor, price.Interval!, price.IntervalCount, oldEnd);
        SyncPeriods(sub);
        if (wasTrial)
        {
            sub.Status = "active";
        }

        var lines = sub.PendingProrations.Select(pending => PendingLine(sub, pending)).ToList();
        sub.PendingProrations.Clear();
        lines.AddRange(usage);
        lines.Add(NewLine(price.AmountFor(item.Quantity), LineDescriptionFor(price, item.Quantity), price.Id, item.Quantity, item.PeriodStart, item.PeriodEnd, false, item.Id));
        // Stripe quirk kept on purpose: a cycle invoice's own period_start/end look back one period; the lines carry the new one.
        var invoice = NewInvoice(sub, "subscription_cycle", lines, oldStart, oldEnd);
        sub.LatestInvoiceId = invoice.Id;
        EmitInvoiceCreatedAndFinalized(invoice);
        // create_invoice without a payment method: the invoice cannot be paid, so the subscription goes past due.
        var (paid, _) = AttemptInvoicePayment(invoice, offSession: true, emitSubscriptionUpdate: false);
        if (!paid)
        {
            sub.Status = "past_due";
        }
        state.Emit("customer.subscription.updated", json.Subscription(sub), Diff(previous, json.Subscription(sub)));
        if (advancing is not null)
        {
            advancing.CurrentPhaseIndex++;
            var scheduleAfter = json.SubscriptionSchedule(advancing);
            state.Emit("subscription_schedule.updated", scheduleAfter, Diff(scheduleBefore!, scheduleAfter));
        }
    }

    private void EndSubscription(Subscription sub, string reason, JsonObject previous)
    {
        var now = state.Now;
        sub.Status = "canceled";
        sub.EndedAt = now;
        sub.CanceledAt ??= now;
        sub.CancellationReason = reason;
        foreach (var open in state.Invoices.Values.Where(i => i.SubscriptionId == sub.Id && i.Status == "open"))
        {
            open.NextPaymentAttempt = null;
        }
        state.Emit("customer.subscription.deleted", json.Subscription(sub), Diff(previous, json.Subscription(sub)));
        if (ScheduleOf(sub) is { } schedule)
        {
            // A subscription that ends (canceled now, retries exhausted) takes its schedule with it.
            schedule.Status = "canceled";
            schedule.CanceledAt = now;
            state.Emit("subscription_schedule.canceled", json.SubscriptionSchedule(schedule));
        }
    }

    // ---------------------------------------------------------------- subscription changes

    /// <summary><c>DELETE /v1/subscriptions/{id}</c>: the subscription ends now; with <c>invoice_now</c> a final invoice bills
    /// the metered usage not billed yet (if any).</summary>
    public void CancelNow(Subscription sub, bool invoiceNow = false)
    {
        if (sub.IsEnded)
        {
            throw StripeError.Invalid(null, $"A canceled subscription can only update its cancellation_details and metadata.", "subscription_canceled");
        }
        sub.CancellationReason = "cancellation_requested";
        var previous = json.Subscription(sub);
        if (invoiceNow)
        {
            BillFinalUsage(sub, "subscription_update");
        }
        EndSubscription(sub, "cancellation_requested", previous);
    }

    public void SetCancelAtPeriodEnd(Subscription sub, bool cancel, JsonObject previous)
    {
        RefuseCancelationChange(sub);
        if (sub.CancelAtPeriodEnd == cancel)
        {
            return;
        }
        sub.CancelAtPeriodEnd = cancel;
        sub.CancelAt = cancel ? (sub.Status == "trialing" ? sub.TrialEnd : sub.Item.PeriodEnd) : null;
        sub.CanceledAt = cancel ? state.Now : null;
        sub.CancellationReason = cancel ? "cancellation_requested" : null;
    }

    /// <summary>The proration lines for moving <paramref name="item"/> to <paramref name="newPrice"/> at <paramref name="at"/>:
    /// the unused time of the old price credited, the remaining time of the new price charged, by seconds.</summary>
    public List<InvoiceLine> Prorations(Subscription sub, SubscriptionItem item, Price newPrice, long newQuantity, long at)
    {
        var oldPrice = state.Prices[item.PriceId];
        var length = item.PeriodEnd - item.PeriodStart;
        var remaining = Math.Clamp(item.PeriodEnd - at, 0, length);
        if (length <= 0 || remaining == 0 || sub.Status == "trialing")
        {
            return [];
        }
        var date = DateTimeOffset.FromUnixTimeSeconds(at).ToString("d MMM yyyy", CultureInfo.InvariantCulture);
        var credit = -(long)Math.Round(oldPrice.UnitPrice * item.Quantity * remaining / length, MidpointRounding.AwayFromZero);
        var debit = (long)Math.Round(newPrice.UnitPrice * newQuantity * remaining / length, MidpointRounding.AwayFromZero);
        return
        [
            NewLine(credit, $"Unused time on {item.Quantity} × {state.Products[oldPrice.ProductId].Name} after {date}", oldPrice.Id, item.Quantity, at, item.PeriodEnd, true, item.Id),
            NewLine(debit, $"Remaining time on {newQuantity} × {state.Products[newPrice.ProductId].Name} after {date}", newPrice.Id, newQuantity, at, item.PeriodEnd, true, item.Id),
        ];
    }

    // ---------------------------------------------------------------- refunds

    public Refund CreateRefund(Charge charge, long? amount, string? reason, Dictionary<string, string>? metadata)
    {
        if (!charge.Paid)
        {
            throw StripeError.Invalid("charge", $"Charge {charge.Id} has not succeeded and cannot be refunded.", "charge_not_refundable");
        }
        var left = charge.Amount - charge.AmountRefunded;
        if (left <= 0)
        {
            throw StripeError.Invalid("charge", $"Charge {charge.Id} has already been refunded.", "charge_already_refunded");
        }
        if (charge.Disputed)
        {
            // A chargeback's dispute has is_charge_refundable=false: the bank already took the money back.
            throw StripeError.Invalid("charge", $"Charge {charge.Id} has been charged back; cannot issue a refund.", "charge_disputed");
        }
        var value = amount ?? left;
        if (value <= 0)
        {
            throw StripeError.Invalid("amount", "Invalid positive integer", "parameter_invalid_integer");
        }
        if (value > left)
        {
            throw StripeError.Invalid("amount", $"Refund amount ({FormatAmount(value, charge.Currency)}) is greater than unrefunded amount on charge ({FormatAmount(left, charge.Currency)})", "amount_too_large");
        }
        if (reason is not null && reason is not ("duplicate" or "fraudulent" or "requested_by_customer"))
        {
            throw StripeError.Invalid("reason", $"Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer");
        }
        var previous = json.Charge(charge);
        var refund = new Refund
        {
            Id = state.NewId("re_"),
            Created = state.Now,
            Amount = value,
            Currency = charge.Currency,
            ChargeId = charge.Id,
            PaymentIntentId = charge.PaymentIntentId,
            Reason = reason,
            Metadata = metadata ?? new(),
        };
        state.Refunds[refund.Id] = refund;
        charge.AmountRefunded += value;
        var now = json.Charge(charge);
        state.Emit("charge.refunded", now, Diff(previous, now));
        state.Emit("refund.created", json.Refund(refund));
        return refund;
    }

    /// <summary>
    /// The card's bank returns <paramref name="refund"/> (a closed or expired card): the refund fails, its amount goes back
    /// to the charge's refundable amount, <c>charge.refund.updated</c> and <c>refund.failed</c>.
    /// </summary>
    public Refund FailRefund(Refund refund, string? reason)
    {
        if (refund.Status != "succeeded")
        {
            throw StripeError.Invalid("refund", $"Refund {refund.Id} is {refund.Status}; only a succeeded refund can fail.", null);
        }
        var failure = reason ?? "expired_or_canceled_card";
        if (failure is not ("lost_or_stolen_card" or "expired_or_canceled_card" or "charge_for_pending_refund_disputed" or "insufficient_funds"
            or "declined" or "merchant_request" or "unknown"))
        {
            throw StripeError.Invalid("failure_reason", $"Unknown failure_reason {failure}.", null);
        }
        var previous = json.Refund(refund);
        refund.Status = "failed";
        refund.FailureReason = failure;
        state.Charges[refund.ChargeId].AmountRefunded -= refund.Amount;
        var now = json.Refund(refund);
        state.Emit("charge.refund.updated", now, Diff(previous, now));
        state.Emit("refund.failed", now);
        return refund;
    }

    // ---------------------------------------------------------------- disputes

    /// <summary>Stripe's dispute reasons.</summary>
    public static readonly string[] DisputeReasons =
    [
        "bank_cannot_process", "check_returned", "credit_not_processed", "customer_initiated", "debit_not_authorized", "duplicate",
        "fraudulent", "general", "incorrect_account_details", "insufficient_funds", "noncompliant", "product_not_received",
        "product_unacceptable", "subscription_canceled", "unrecognized",
    ];

    /// <summary>How long the merchant has to answer a dispute (Stripe: usually 7 to 21 days, set by the network).</summary>
    public const long DisputeResponseSeconds = 7 * 86400;

    /// <summary>The cardholder's bank disputes <paramref name="charge"/> (a chargeback): a dispute that needs a response,
    /// the charge marked <c>disputed</c>, <c>charge.dispute.created</c>.</summary>
    public Dispute CreateDispute(Charge charge, long? amount, string? reason)
    {
        if (!charge.Paid)
        {
            throw StripeError.Invalid("charge", $"Charge {charge.Id} has not succeeded and cannot be disputed.");
        }
        if (charge.Disputed)
        {
            throw StripeError.Invalid("charge", $"Charge {charge.Id} has already been disputed.", "charge_disputed");
        }
        var left = charge.Amount - charge.AmountRefunded;
        if (left <= 0)
        {
            throw StripeError.Invalid("charge", $"Charge {charge.Id} has been refunded in full; there is nothing left to dispute.");
        }
        var value = amount ?? left;
        if (value <= 0)
        {
            throw StripeError.Invalid("amount", "Invalid positive integer", "parameter_invalid_integer");
        }
        if (value > left)
        {
            throw StripeError.Invalid("amount", $"Dispute amount ({FormatAmount(value, charge.Currency)}) is greater than the unrefunded amount on the charge ({FormatAmount(left, charge.Currency)})", "amount_too_large");
        }
        reason ??= "fraudulent";
        if (!DisputeReasons.Contains(reason))
        {
            throw StripeError.Invalid("reason", $"Invalid reason: must be one of {string.Join(", ", DisputeReasons)}");
        }
        var now = state.Now;
        var dispute = new Dispute
        {
            Id = state.NewId("dp_"),
            Created = now,
            Amount = value,
            Currency = charge.Currency,
            ChargeId = charge.Id,
            PaymentIntentId = charge.PaymentIntentId,
            Reason = reason,
            DueBy = now + DisputeResponseSeconds,
        };
        state.Disputes[dispute.Id] = dispute;
        charge.Disputed = true;
        state.Emit("charge.dispute.created", json.Dispute(dispute));
        return dispute;
    }

    /// <summary>The bank decides: <paramref name="status"/> is <c>won</c> or <c>lost</c>; <c>charge.dispute.closed</c>.</summary>
    public Dispute CloseDispute(Dispute dispute, string status)
    {
        if (status is not ("won" or "lost"))
        {
            throw StripeError.Invalid("status", $"Invalid status: must be one of won or lost");
        }
        if (dispute.Status is "won" or "lost")
        {
            throw StripeError.Invalid("status", $"Dispute {dispute.Id} is already closed ({dispute.Status}).");
        }
        dispute.Status = status;
        state.Emit("charge.dispute.closed", json.Dispute(dispute));
        return dispute;
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>Stripe's <c>previous_attributes</c>: the old values of the top-level fields that changed.</summary>
    public static JsonObject Diff(JsonObject before, JsonObject after)
    {
        var diff = new JsonObject();
        foreach (var (key, value) in before)
        {
            if (!JsonNode.DeepEquals(value, after[key]))
            {
                diff[key] = value?.DeepClone();
            }
        }
        return diff;
    }
}
