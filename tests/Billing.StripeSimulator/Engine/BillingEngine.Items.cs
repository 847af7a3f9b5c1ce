using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Engine;

/// <summary>One requested change of a subscription's items, as a request names it (<c>items[n]</c> of an update or a
/// preview): <see cref="Item"/> (by <c>id</c>) and/or <see cref="Price"/>, <see cref="Quantity"/>, <c>deleted</c>.</summary>
public sealed record ItemRequest(string Param, SubscriptionItem? Item, Price? Price, long? Quantity, bool Deleted);

/// <summary>One change of a subscription's items: <see cref="Item"/> takes <see cref="Price"/> and <see cref="Quantity"/>,
/// or goes (<see cref="Delete"/>); without <see cref="Item"/> a new item with <see cref="Price"/> is added.</summary>
public sealed record ItemUpdate(SubscriptionItem? Item, Price? Price, long Quantity = 0, bool Delete = false);

/// <summary>
/// Subscriptions with several items: one licensed item (the plan: its price, quantity and period are "the" subscription's)
/// plus any number of metered items, all on the same interval and sharing the licensed item's period. Metered items bill
/// in arrears what their price's meter aggregated for the customer since <see cref="SubscriptionItem.UsageStart"/>: at
/// each renewal, when they leave (flexible billing mode: deleted or re-priced, unless <c>proration_behavior=none</c>), and
/// on the final invoice of a subscription that ends. Each bill moves the usage start, so usage is billed once at most.
/// </summary>
public sealed partial class BillingEngine
{
    /// <summary>What a change of items bills: <see cref="Lines"/> to invoice now (<see cref="InvoiceNow"/>) or to leave
    /// pending for the next invoice; with <see cref="ResetAnchor"/> a new period starts now and ends at <see cref="PeriodEnd"/>.</summary>
    private sealed record ChangeBill(List<InvoiceLine> Lines, bool InvoiceNow, bool ResetAnchor, long PeriodEnd);

    // ---------------------------------------------------------------- validation

    /// <summary>Stripe's refusal of a quantity for a metered price (<paramref name="param"/> is the item, e.g. <c>items[1]</c>).</summary>
    public static StripeError QuantityOnMetered(string param) =>
        StripeError.Invalid($"{param}[quantity]", $"Quantity should not be specified where usage_type is `metered`. Remove quantity from `{param}`.");

    /// <summary>The prices of a subscription, a checkout or a schedule phase: exactly one licensed price (the simulator's
    /// limit; Stripe allows more) plus any number of metered ones, each once, all on the same interval (Stripe's rule).</summary>
    public static void ValidateItemSet(IReadOnlyList<Price> prices, string param)
    {
        if (prices.Count(p => !p.IsMetered) != 1)
        {
            throw StripeError.Invalid(param, "The simulator supports exactly one licensed price per subscription (its plan), plus any number of metered prices.", null);
        }
        if (prices.GroupBy(p => p.Id).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw StripeError.Invalid(param, $"The price `{twice.Key}` is given more than once: a subscription holds each price in one item.");
        }
        var first = prices[0];
        var mismatch = prices.Any(p => p.Interval != first.Interval) ? "interval" : prices.Any(p => p.IntervalCount != first.IntervalCount) ? "interval_count" : null;
        if (mismatch is not null)
        {
            throw StripeError.Invalid(param, $"Currency and interval fields must match across all plans on this subscription. Found mismatch in {mismatch} field.");
        }
    }

    /// <summary>The changes <paramref name="requests"/> ask of <paramref name="sub"/>'s items, checked the way Stripe checks
    /// them; requests that change nothing are left out.</summary>
    public List<ItemUpdate> ResolveItemChanges(Subscription sub, IReadOnlyList<ItemRequest> requests, string param)
    {
        var updates = new List<ItemUpdate>();
        foreach (var r in requests)
        {
            if (r.Deleted)
            {
                var gone = r.Item ?? throw StripeError.Missing($"{r.Param}[id]");
                if (!gone.Metered)
                {
                    throw StripeError.Invalid($"{r.Param}[deleted]", "The simulator cannot delete a subscription's licensed item (its plan): change its price instead.", null);
                }
                updates.Add(new ItemUpdate(gone, null, Delete: true));
                continue;
            }
            var price = r.Price ?? (r.Item is { } existing ? state.Prices[existing.PriceId] : throw StripeError.Missing($"{r.Param}[price]"));
            if (!price.IsRecurring || !price.Active)
            {
                throw StripeError.Invalid($"{r.Param}[price]", "The price specified must be an active recurring price.");
            }
            if (price.Currency != sub.Currency)
            {
                throw StripeError.Invalid($"{r.Param}[price]", "The price specified must be in the subscription's currency.");
            }
            if (price.IsMetered && r.Quantity is not null)
            {
                throw QuantityOnMetered(r.Param);
            }
            if (r.Item is { } item && item.Metered != price.IsMetered)
            {
                throw StripeError.Invalid($"{r.Param}[price]", "The simulator cannot switch an item between a licensed and a metered price: delete the metered item, or add one.", null);
            }
            if (r.Item is null && !price.IsMetered)
            {
                throw StripeError.Invalid($"{r.Param}[price]", $"The simulator supports one licensed item per subscription: pass `{r.Param}[id]` to change its price.", null);
            }
            var quantity = price.IsMetered ? 0 : r.Quantity ?? r.Item?.Quantity ?? 1;
            if (r.Item is not null && r.Item.PriceId == price.Id && r.Item.Quantity == quantity)
            {
                continue;
            }
            updates.Add(new ItemUpdate(r.Item, price, quantity));
        }
        var after = sub.Items
            .Where(i => !updates.Any(u => u.Item == i && u.Delete))
            .Select(i => updates.FirstOrDefault(u => u.Item == i)?.Price ?? state.Prices[i.PriceId])
            .Concat(updates.Where(u => u.Item is null).Select(u => u.Price!))
            .ToList();
        ValidateItemSet(after, param);
        return updates;
    }

    /// <summary>The changes that turn <paramref name="sub"/>'s items into <paramref name="wanted"/> (a schedule phase's): the
    /// licensed item takes the wanted licensed price and quantity; metered items whose price is wanted stay (with their
    /// usage), the others go, missing ones are added.</summary>
    private List<ItemUpdate> UpdatesToward(Subscription sub, IReadOnlyList<SchedulePhaseItem> wanted)
    {
        var updates = new List<ItemUpdate>();
        var plan = sub.Item;
        var wantedPlan = wanted.First(i => !state.Prices[i.PriceId].IsMetered);
        if (wantedPlan.PriceId != plan.PriceId || wantedPlan.Quantity != plan.Quantity)
        {
            updates.Add(new ItemUpdate(plan, state.Prices[wantedPlan.PriceId], wantedPlan.Quantity));
        }
        var wantedMetered = wanted.Select(i => state.Prices[i.PriceId]).Where(p => p.IsMetered).ToList();
        updates.AddRange(sub.Items.Where(i => i.Metered && wantedMetered.All(p => p.Id != i.PriceId)).Select(i => new ItemUpdate(i, null, Delete: true)));
        updates.AddRange(wantedMetered.Where(p => sub.Items.All(i => i.PriceId != p.Id)).Select(p => new ItemUpdate(null, p)));
        return updates;
    }

    private static bool SameInterval(Price a, Price b) => a.Interval == b.Interval && a.IntervalCount == b.IntervalCount;

    // ---------------------------------------------------------------- changing items

    /// <summary>
    /// Changes <paramref name="sub"/>'s items the way <c>POST /v1/subscriptions/{id}</c> does: the licensed item's change is
    /// prorated (or, on a new interval or <c>billing_cycle_anchor=now</c>, starts a new period billed now); metered items
    /// that leave bill their usage so far unless <paramref name="prorationBehavior"/> is <c>none</c>. What is billed goes on
    /// an invoice paid now (<c>always_invoice</c>, a new period) or waits for the next invoice (<c>create_prorations</c>).
    /// With <c>error_if_incomplete</c> a decline throws before anything changed.
    /// </summary>
    public void ChangeItems(Subscription sub, IReadOnlyList<ItemUpdate> updates, string prorationBehavior, string? anchor, string paymentBehavior, long? prorationDate)
    {
        var now = state.Now;
        var bill = BillChange(sub, updates, prorationBehavior, anchor, prorationDate ?? now);
        if (bill.InvoiceNow)
        {
            var invoice = NewInvoice(sub, "subscription_update", bill.Lines, now, now);
            ChargeNow(sub, invoice, paymentBehavior);
            sub.LatestInvoiceId = invoice.Id;
        }
        else
        {
            sub.PendingProrations.AddRange(bill.Lines.Select(ToPending));
        }
        ApplyItemUpdates(sub, updates, now);
        if (bill.ResetAnchor)
        {
            sub.Item.PeriodStart = now;
            sub.Item.PeriodEnd = bill.PeriodEnd;
            sub.BillingCycleAnchor = now;
            foreach (var item in sub.Items.Where(i => i.Metered))
            {
                item.UsageStart = now; // the period ended now: the invoice billed their usage so far
            }
        }
        SyncPeriods(sub);
    }

    /// <summary>
    /// <c>trial_end=now</c> on an update of a trialing subscription, as Stripe does it: the trial ends now and a new period
    /// starts now, billed in full at the plan's price after <paramref name="updates"/> (an invoice with billing reason
    /// <c>subscription_update</c>, no proration: nothing was paid for the trial); usage during the trial is not billed. With
    /// <c>error_if_incomplete</c> a decline throws before anything changed.
    /// </summary>
    public void EndTrialNow(Subscription sub, IReadOnlyList<ItemUpdate> updates, string paymentBehavior)
    {
        var now = state.Now;
        var plan = sub.Item;
        var planUpdate = updates.FirstOrDefault(u => u.Item == plan);
        var price = planUpdate?.Price ?? state.Prices[plan.PriceId];
        var quantity = planUpdate?.Quantity ?? plan.Quantity;
        var end = Calendar.NextBoundary(now, price.Interval!, price.IntervalCount, now);
        var invoice = NewInvoice(sub, "subscription_update",
            [NewLine(price.AmountFor(quantity), LineDescriptionFor(price, quantity), price.Id, quantity, now, end, false, plan.Id)], now, now);
        sub.Status = "active";
        try
        {
            ChargeNow(sub, invoice, paymentBehavior); // past_due when an allowed payment fails
        }
        catch
        {
            sub.Status = "trialing";
            throw;
        }
        sub.LatestInvoiceId = invoice.Id;
        ApplyItemUpdates(sub, updates, now);
        sub.TrialEnd = now;
        sub.BillingCycleAnchor = now;
        plan.PeriodStart = now;
        plan.PeriodEnd = end;
        foreach (var item in sub.Items.Where(i => i.Metered))
        {
            item.UsageStart = now;
        }
        SyncPeriods(sub);
    }

    /// <summary>A later <c>trial_end</c> on an update of a trialing subscription: the trial (and its period) ends then.</summary>
    public void MoveTrialEnd(Subscription sub, long at)
    {
        sub.TrialEnd = at;
        sub.TrialWillEndSent = false;
        sub.BillingCycleAnchor = at;
        sub.Item.PeriodEnd = at;
        SyncPeriods(sub);
    }

    /// <summary>What changing <paramref name="sub"/>'s items would bill (see <see cref="ChangeItems"/>); changes nothing.</summary>
    private ChangeBill BillChange(Subscription sub, IReadOnlyList<ItemUpdate> updates, string prorationBehavior, string? anchor, long at)
    {
        var now = state.Now;
        var plan = sub.Item;
        var planUpdate = updates.FirstOrDefault(u => u.Item == plan);
        var oldPrice = state.Prices[plan.PriceId];
        var newPrice = planUpdate?.Price ?? oldPrice;
        var quantity = planUpdate?.Quantity ?? plan.Quantity;
        var trialing = sub.Status == "trialing";
        var resetAnchor = (anchor == "now" || !SameInterval(oldPrice, newPrice)) && !trialing;
        var prorations = prorationBehavior == "none" || (planUpdate is null && anchor != "now") ? [] : Prorations(sub, plan, newPrice, quantity, at);

        // A metered item that leaves (deleted or re-priced) bills its usage so far, unless proration_behavior is none; a new
        // period ends the current one for the metered items that stay too. No usage is billed during a trial.
        var usage = new List<InvoiceLine>();
        foreach (var item in trialing ? [] : sub.Items.Where(i => i.Metered))
        {
            var leaving = updates.Any(u => u.Item == item);
            if (leaving ? prorationBehavior != "none" : resetAnchor)
            {
                var price = state.Prices[item.PriceId];
                var from = UsageFrom(item);
                var used = Usage(sub.CustomerId, price, from, now);
                if (used != 0)
                {
                    usage.Add(UsageLine(item, price, used, from, now));
                }
            }
        }

        if (resetAnchor)
        {
            var end = Calendar.NextBoundary(now, newPrice.Interval!, newPrice.IntervalCount, now);
            var lines = prorations.Where(l => l.Amount < 0).ToList();
            lines.Add(NewLine(newPrice.AmountFor(quantity), LineDescriptionFor(newPrice, quantity), newPrice.Id, quantity, now, end, false, plan.Id));
            lines.AddRange(usage);
            return new ChangeBill(lines, InvoiceNow: true, ResetAnchor: true, end);
        }
        var all = prorations.Concat(usage).ToList();
        return new ChangeBill(all, InvoiceNow: prorationBehavior == "always_invoice" && all.Count > 0, ResetAnchor: false, plan.PeriodEnd);
    }

    /// <summary>Applies <paramref name="updates"/> at <paramref name="at"/>: re-priced and added metered items count usage from then.</summary>
    private void ApplyItemUpdates(Subscription sub, IReadOnlyList<ItemUpdate> updates, long at)
    {
        var plan = sub.Item;
        foreach (var update in updates)
        {
            if (update.Delete)
            {
                sub.Items.Remove(update.Item!);
            }
            else if (update.Item is { } item)
            {
                item.PriceId = update.Price!.Id;
                item.Quantity = update.Quantity;
                if (item.Metered)
                {
                    item.UsageStart = at;
                }
            }
            else
            {
                sub.Items.Add(new SubscriptionItem
                {
                    Id = state.NewId("si_", 14),
                    Created = state.Now,
                    PriceId = update.Price!.Id,
                    Quantity = update.Quantity,
                    Metered = update.Price.IsMetered,
                    UsageStart = at,
                    PeriodStart = plan.PeriodStart,
                    PeriodEnd = plan.PeriodEnd,
                });
            }
        }
    }

    /// <summary>Every item shares the licensed item's period.</summary>
    private static void SyncPeriods(Subscription sub)
    {
        var plan = sub.Item;
        foreach (var item in sub.Items)
        {
            item.PeriodStart = plan.PeriodStart;
            item.PeriodEnd = plan.PeriodEnd;
        }
    }

    /// <summary>Finalizes and pays an update invoice at once; with <c>error_if_incomplete</c> a decline undoes everything.</summary>
    private void ChargeNow(Subscription sub, Invoice invoice, string paymentBehavior)
    {
        if (paymentBehavior == "error_if_incomplete" && invoice.AmountDue > 0)
        {
            var outcome = DecideFor(state.Customers[sub.CustomerId], offSession: true);
            if (!outcome.Succeeded)
            {
                state.Invoices.Remove(invoice.Id);
                throw StripeError.Card(outcome.Code!, outcome.Message!, outcome.DeclineCode);
            }
        }
        EmitInvoiceCreatedAndFinalized(invoice);
        var (paid, _) = AttemptInvoicePayment(invoice, offSession: true, emitSubscriptionUpdate: false);
        if (!paid)
        {
            sub.Status = "past_due";
        }
    }

    private static PendingProration ToPending(InvoiceLine line) => new()
    {
        Description = line.Description,
        Amount = line.Amount,
        PriceId = line.PriceId!,
        Quantity = line.Quantity,
        PeriodStart = line.PeriodStart,
        PeriodEnd = line.PeriodEnd,
        Proration = line.Proration,
        SubscriptionItemId = line.SubscriptionItemId,
        QuantityDecimal = line.QuantityDecimal,
        UnitAmountDecimal = line.UnitAmountDecimal,
    };

    private InvoiceLine PendingLine(Subscription sub, PendingProration p) =>
        NewLine(p.Amount, p.Description, p.PriceId, p.Quantity, p.PeriodStart, p.PeriodEnd, p.Proration, p.SubscriptionItemId ?? sub.Item.Id, p.QuantityDecimal, p.UnitAmountDecimal);

    // ---------------------------------------------------------------- metered usage

    /// <summary>What the meter of <paramref name="price"/> aggregates for <paramref name="customerId"/> over the meter events
    /// with a timestamp in [<paramref name="from"/>, <paramref name="until"/>).</summary>
    public decimal Usage(string customerId, Price price, long from, long until) =>
        price.MeterId is not null && state.Meters.TryGetValue(price.MeterId, out var meter) ? UsageOfMeter(meter, customerId, from, until) : 0;

    /// <summary>What <paramref name="meter"/> aggregates (sum, count or last value) for <paramref name="customerId"/> over
    /// the meter events with a timestamp in [<paramref name="from"/>, <paramref name="until"/>) (events rejected after they
    /// were accepted count nowhere).</summary>
    public decimal UsageOfMeter(Meter meter, string customerId, long from, long until)
    {
        var values = state.MeterEvents
            .Where(e => e.EventName == meter.EventName && e.CustomerId == customerId && e.Timestamp >= from && e.Timestamp < until && e.RejectedWith is null)
            .OrderBy(e => e.Timestamp)
            .Select(e => decimal.Parse(e.Value, System.Globalization.NumberStyles.Number, System.Globalization.CultureInfo.InvariantCulture))
            .ToList();
        return meter.Formula switch
        {
            "count" => values.Count,
            "last" => values.Count == 0 ? 0 : values[^1],
            _ => values.Sum(),
        };
    }

    /// <summary>Where a metered item's unbilled usage starts: not before its current period.</summary>
    private static long UsageFrom(SubscriptionItem item) => Math.Max(item.PeriodStart, item.UsageStart);

    /// <summary>The invoice line for <paramref name="quantity"/> of a metered item's usage over [<paramref name="from"/>, <paramref name="until"/>).</summary>
    private InvoiceLine UsageLine(SubscriptionItem item, Price price, decimal quantity, long from, long until) =>
        NewLine(price.AmountFor(quantity), LineDescriptionFor(price, quantity), price.Id, decimal.Truncate(quantity) == quantity ? (long)quantity : 0,
            from, until, false, item.Id, quantity, price.UnitPrice);

    /// <summary>The lines for the usage of <paramref name="sub"/>'s metered items up to <paramref name="until"/> (zero ones
    /// only with <paramref name="includeZero"/>; none unless <paramref name="bill"/>). Their usage start moves to
    /// <paramref name="until"/> either way, so that nothing is billed twice.</summary>
    private List<InvoiceLine> TakeUsage(Subscription sub, long until, bool bill, bool includeZero)
    {
        var lines = new List<InvoiceLine>();
        foreach (var item in sub.Items.Where(i => i.Metered))
        {
            var price = state.Prices[item.PriceId];
            var from = UsageFrom(item);
            var used = bill ? Usage(sub.CustomerId, price, from, until) : 0;
            if (bill && (used != 0 || includeZero))
            {
                lines.Add(UsageLine(item, price, used, from, until));
            }
            item.UsageStart = until;
        }
        return lines;
    }

    /// <summary>A subscription that ends (at its period end, or now with <c>invoice_now</c>) bills the metered usage it has
    /// not billed yet on a final invoice, paid like a renewal; nothing when there is none (or during a trial).</summary>
    private void BillFinalUsage(Subscription sub, string reason)
    {
        var now = state.Now;
        var lines = TakeUsage(sub, now, bill: sub.Status != "trialing", includeZero: false);
        if (lines.Count == 0)
        {
            return;
        }
        var invoice = NewInvoice(sub, reason, lines, sub.Item.PeriodStart, now);
        sub.LatestInvoiceId = invoice.Id;
        EmitInvoiceCreatedAndFinalized(invoice);
        AttemptInvoicePayment(invoice, offSession: true, emitSubscriptionUpdate: false);
    }

    // ---------------------------------------------------------------- previews

    /// <summary>The invoice a change would produce (or the next renewal), for <c>POST /v1/invoices/create_preview</c>.</summary>
    public Invoice Preview(Subscription sub, IReadOnlyList<ItemUpdate> updates, string prorationBehavior, string? anchor, long? prorationDate)
    {
        var now = state.Now;
        var item = sub.Item;
        List<InvoiceLine> changeLines = [];
        if (updates.Count > 0)
        {
            var bill = BillChange(sub, updates, prorationBehavior, anchor, prorationDate ?? now);
            if (bill.ResetAnchor || prorationBehavior == "always_invoice")
            {
                return NewInvoice(sub, "subscription_update", bill.Lines, now, now, preview: true);
            }
            changeLines = bill.Lines;
        }
        var planUpdate = updates.FirstOrDefault(u => u.Item == item);
        var price = planUpdate?.Price ?? state.Prices[item.PriceId];
        var qty = planUpdate?.Quantity ?? item.Quantity;
        var renewalAnchor = sub.BillingCycleAnchor;
        if (updates.Count == 0 && ScheduleOf(sub) is { } schedule && schedule.CurrentPhase.EndDate == item.PeriodEnd && schedule.CurrentPhaseIndex + 1 < schedule.Phases.Count)
        {
            // The renewal enters the schedule's next phase: its licensed item, and periods counted from the phase start on a new interval.
            var next = schedule.Phases[schedule.CurrentPhaseIndex + 1];
            var nextItem = next.Items.First(i => !state.Prices[i.PriceId].IsMetered);
            var nextPrice = state.Prices[nextItem.PriceId];
            if (next.BillingCycleAnchor == "phase_start" || !SameInterval(nextPrice, price))
            {
                renewalAnchor = item.PeriodEnd;
            }
            price = nextPrice;
            qty = nextItem.Quantity;
        }
        var nextEnd = Calendar.NextBoundary(renewalAnchor, price.Interval!, price.IntervalCount, item.PeriodEnd);
        var upcoming = sub.PendingProrations.Select(p => PendingLine(sub, p)).Concat(changeLines).ToList();
        // The usage of the metered items so far (the renewal bills the whole period's); ones the change replaces are left out.
        foreach (var metered in sub.Status == "trialing" ? [] : sub.Items.Where(i => i.Metered && updates.All(u => u.Item != i)))
        {
            var meteredPrice = state.Prices[metered.PriceId];
            var from = UsageFrom(metered);
            // Up to and including this second: an event reported just now is part of "so far".
            upcoming.Add(UsageLine(metered, meteredPrice, Usage(sub.CustomerId, meteredPrice, from, now + 1), from, item.PeriodEnd));
        }
        if (updates.Count == 0 && (sub.CancelAtPeriodEnd || sub.CancelAt is { } cancelAt && cancelAt <= item.PeriodEnd))
        {
            // Nothing renews: what is left is the final invoice of the usage so far (and pending prorations), if any.
            if (upcoming.All(l => l.Amount == 0))
            {
                throw StripeError.Invalid("subscription", $"No upcoming invoices for subscription: {sub.Id}", "invoice_upcoming_none");
            }
            return NewInvoice(sub, "upcoming", upcoming, item.PeriodStart, item.PeriodEnd, preview: true);
        }
        upcoming.Add(NewLine(price.AmountFor(qty), LineDescriptionFor(price, qty), price.Id, qty, item.PeriodEnd, nextEnd, false, item.Id));
        return NewInvoice(sub, "upcoming", upcoming, item.PeriodStart, item.PeriodEnd, preview: true);
    }
}
