using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Engine;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Api;

/// <summary>
/// Subscription schedules created from an existing subscription (<c>from_subscription</c>), their phases replaced,
/// released or canceled. Schedules for a future subscription (<c>customer</c> + <c>phases</c>) are not simulated.
/// </summary>
public static class SubscriptionSchedulesApi
{
    private static readonly string[] Intervals = ["day", "week", "month", "year"];

    public static void MapSubscriptionSchedulesApi(this IEndpointRouteBuilder app)
    {
        app.MapStripe("POST", "/v1/subscription_schedules", CreateSchedule);
        app.MapStripe("GET", "/v1/subscription_schedules", ListSchedules);
        app.MapStripe("GET", "/v1/subscription_schedules/{id}", c => c.Expand(c.Sim.Json.SubscriptionSchedule(c.Sim.SubscriptionSchedule(c.Route("id"), "schedule"))));
        app.MapStripe("POST", "/v1/subscription_schedules/{id}", UpdateSchedule);
        app.MapStripe("POST", "/v1/subscription_schedules/{id}/release", ReleaseSchedule);
        app.MapStripe("POST", "/v1/subscription_schedules/{id}/cancel", CancelSchedule);
    }

    private static JsonObject CreateSchedule(StripeCall c)
    {
        var f = c.Form;
        if (f.Str("from_subscription") is not { Length: > 0 } subId)
        {
            if (Given(f, "customer") || Given(f, "phases"))
            {
                throw StripeError.Invalid(null, "Creating a subscription schedule from `customer` and `phases` (a future subscription) is not supported by the simulator; use `from_subscription`.", null);
            }
            throw StripeError.Missing("customer");
        }
        foreach (var param in new[] { "phases", "start_date", "end_behavior", "customer", "default_settings" })
        {
            if (Given(f, param))
            {
                throw StripeError.Invalid(param, $"You cannot set `{param}` if `from_subscription` is set.");
            }
        }
        var sub = c.Sim.Subscription(subId, "from_subscription");
        var metadata = f.Map("metadata")?.Where(p => p.Value.Length > 0).ToDictionary(p => p.Key, p => p.Value);
        var schedule = c.Sim.Engine.CreateScheduleFromSubscription(sub, metadata);
        return c.Expand(c.Sim.Json.SubscriptionSchedule(schedule));
    }

    private static JsonObject ListSchedules(StripeCall c)
    {
        var f = c.Form;
        var customer = f.Str("customer");
        var scheduled = f.Bool("scheduled");
        var items = c.Sim.State.SubscriptionSchedules.Values
            .Where(s => customer is null || s.CustomerId == customer)
            .Where(s => scheduled is null || (s.Status == "not_started") == scheduled)
            .Where(s => InRange(f, "created", s.Created) && InRange(f, "canceled_at", s.CanceledAt) && InRange(f, "completed_at", s.CompletedAt) && InRange(f, "released_at", s.ReleasedAt))
            .OrderByDescending(s => c.Sim.State.Order(s.Id));
        return c.Sim.Page(items, s => s.Id, c.Sim.Json.SubscriptionSchedule, f, "/v1/subscription_schedules");
    }

    /// <summary>Stripe's timestamp filters: <c>created=N</c> or <c>created[gt|gte|lt|lte]=N</c>; a filtered field that is
    /// null does not match.</summary>
    private static bool InRange(Form f, string name, long? value)
    {
        if (!f.Has(name))
        {
            return true;
        }
        if (value is not { } v)
        {
            return false;
        }
        return (f.Sub(name) is not null || f.Long(name) is not { } exact || v == exact)
               && (f.Long(name, "gt") is not { } gt || v > gt)
               && (f.Long(name, "gte") is not { } gte || v >= gte)
               && (f.Long(name, "lt") is not { } lt || v < lt)
               && (f.Long(name, "lte") is not { } lte || v <= lte);
    }

    private static JsonObject UpdateSchedule(StripeCall c)
    {
        var f = c.Form;
        var schedule = c.Sim.SubscriptionSchedule(c.Route("id"), "schedule");
        if (!schedule.IsLive)
        {
            throw StripeError.Invalid(null, $"You cannot update a subscription schedule that is currently in the `{schedule.Status}` status.");
        }
        var sub = c.Sim.State.Subscriptions[schedule.SubscriptionId!];
        var prorationBehavior = ProrationBehavior(f.Str("proration_behavior"), "proration_behavior");
        var endBehavior = f.Str("end_behavior");
        if (endBehavior is not (null or "release" or "cancel"))
        {
            throw StripeError.Invalid("end_behavior", "Invalid end_behavior: must be one of release or cancel");
        }
        List<SchedulePhase>? phases = null;
        if (f.Has("phases"))
        {
            phases = ParsePhases(c, schedule, sub, f.Items("phases"));
        }

        var before = c.Sim.Json.SubscriptionSchedule(schedule);
        var subscriptionBefore = c.Sim.Json.Subscription(sub);
        if (phases is not null)
        {
            c.Sim.Engine.ReplacePhases(schedule, sub, phases, prorationBehavior);
        }
        if (endBehavior is not null)
        {
            schedule.EndBehavior = endBehavior;
        }
        c.ApplyMetadata(schedule.Metadata, "metadata");
        BillingEngine.SyncCancelAt(schedule, sub);
        // default_settings are accepted and not kept: the simulator bills every phase the same way.

        var after = c.Sim.Json.SubscriptionSchedule(schedule);
        var diff = BillingEngine.Diff(before, after);
        if (diff.Count > 0)
        {
            c.Sim.State.Emit("subscription_schedule.updated", after, diff);
        }
        var subscriptionAfter = c.Sim.Json.Subscription(sub);
        var subscriptionDiff = BillingEngine.Diff(subscriptionBefore, subscriptionAfter);
        if (subscriptionDiff.Count > 0)
        {
            c.Sim.State.Emit("customer.subscription.updated", subscriptionAfter, subscriptionDiff);
        }
        return c.Expand(after);
    }

    private static JsonObject ReleaseSchedule(StripeCall c)
    {
        var schedule = c.Sim.SubscriptionSchedule(c.Route("id"), "schedule");
        c.Sim.Engine.ReleaseSchedule(schedule, c.Form.Bool("preserve_cancel_date") ?? false);
        return c.Expand(c.Sim.Json.SubscriptionSchedule(schedule));
    }

    private static JsonObject CancelSchedule(StripeCall c)
    {
        var schedule = c.Sim.SubscriptionSchedule(c.Route("id"), "schedule");
        // invoice_now (default true): a final invoice bills the metered usage not billed yet; prorate is accepted and ignored.
        c.Sim.Engine.CancelSchedule(schedule, c.Form.Bool("invoice_now") ?? true);
        return c.Expand(c.Sim.Json.SubscriptionSchedule(schedule));
    }

    /// <summary>A parameter that is set to something (Stripe.net sends an Options property set to null as an empty string).</summary>
    private static bool Given(Form f, string name) => f.Sub(name) is not null || f.Str(name) is { Length: > 0 };

    private static string ProrationBehavior(string? value, string param) => value switch
    {
        null or "" => "create_prorations",
        "create_prorations" or "always_invoice" or "none" => value,
        _ => throw StripeError.Invalid(param, "Invalid proration_behavior: must be one of always_invoice, create_prorations, or none"),
    };

    /// <summary>A phase's items: one licensed price with a quantity (default 1), any number of metered ones without.</summary>
    private static List<SchedulePhaseItem> ParsePhaseItems(StripeCall c, Subscription sub, Form phase, string param)
    {
        var forms = phase.Items("items");
        if (forms.Count == 0)
        {
            throw StripeError.Missing($"{param}[items]");
        }
        var items = new List<SchedulePhaseItem>();
        for (var j = 0; j < forms.Count; j++)
        {
            var itemForm = forms[j];
            var itemParam = $"{param}[items][{j}]";
            if (Given(itemForm, "price_data"))
            {
                throw StripeError.Invalid($"{itemParam}[price_data]", "`price_data` in schedule phases is not supported by the simulator; pass `price`.", null);
            }
            var priceId = itemForm.Str("price") is { Length: > 0 } id ? id : itemForm.Str("plan") is { Length: > 0 } plan ? plan : throw StripeError.Missing($"{itemParam}[price]");
            var price = c.Sim.Price(priceId, $"{itemParam}[price]");
            if (!price.IsRecurring || !price.Active)
            {
                throw StripeError.Invalid($"{itemParam}[price]", "The price specified must be an active recurring price.");
            }
            if (price.Currency != sub.Currency || phase.Str("currency") is { Length: > 0 } currency && currency != sub.Currency)
            {
                throw StripeError.Invalid($"{itemParam}[price]", $"The price specified must be in the subscription's currency ({sub.Currency}).");
            }
            var quantity = itemForm.Long("quantity");
            if (price.IsMetered && quantity is not null)
            {
                throw BillingEngine.QuantityOnMetered(itemParam);
            }
            if (quantity < 0)
            {
                throw StripeError.Invalid($"{itemParam}[quantity]", "Invalid quantity: must be a non-negative integer.");
            }
            items.Add(new SchedulePhaseItem { PriceId = price.Id, Quantity = price.IsMetered ? 0 : quantity ?? 1, Metadata = itemForm.Map("metadata") ?? new() });
        }
        BillingEngine.ValidateItemSet([.. items.Select(i => c.Sim.State.Prices[i.PriceId])], $"{param}[items]");
        return items;
    }

    /// <summary>
    /// The new current and future phases. Past phases may be omitted (given ones are left as they were); the first
    /// remaining phase is the current one and keeps its start; each later phase starts where the one before ends
    /// (<c>start_date</c> may be omitted); every phase but the last needs <c>end_date</c> or <c>duration</c>, the last one
    /// defaults to one billing period of its price.
    /// </summary>
    private static List<SchedulePhase> ParsePhases(StripeCall c, SubscriptionSchedule schedule, Subscription sub, List<Form> given)
    {
        if (given.Count == 0)
        {
            throw StripeError.Invalid("phases", "A subscription schedule needs at least one phase.");
        }
        var now = c.Sim.State.Now;
        var current = schedule.CurrentPhase;
        var past = schedule.Phases.Take(schedule.CurrentPhaseIndex).ToList();
        var phases = new List<SchedulePhase>();
        long previousEnd = current.StartDate;
        for (var i = 0; i < given.Count; i++)
        {
            var p = given[i];
            var param = $"phases[{i}]";
            if (p.Str("start_date") == "now" || p.Str("end_date") == "now")
            {
                throw StripeError.Invalid(p.Str("start_date") == "now" ? $"{param}[start_date]" : $"{param}[end_date]",
                    "`now` as a phase date is not supported by the simulator; pass a timestamp.", null);
            }
            // The current phase's trial, passed back as it is, is all the simulator models. Stripe replaces every phase setting
            // that is not sent again, so leaving it out would end the trial now: the simulator refuses that instead of
            // pretending the trial goes on, so that a caller that forgets it finds out here.
            var currentTrial = phases.Count == 0 && current.TrialEnd is { } trialEnd && trialEnd > now ? current.TrialEnd : null;
            if (p.Bool("trial") == true || Given(p, "trial_end") && (currentTrial is null || p.Long("trial_end") != currentTrial))
            {
                throw StripeError.Invalid($"{param}[trial_end]",
                    "Trials in schedule phases are not supported by the simulator, except the current phase's trial_end passed back unchanged.", null);
            }
            if (currentTrial is not null && !Given(p, "trial_end") && !(p.Long("start_date") is { } given0 && given0 < current.StartDate))
            {
                throw StripeError.Invalid($"{param}[trial_end]",
                    "The current phase is in a trial: without its trial_end Stripe would end the trial now (the simulator does not simulate that).", null);
            }
            var start = p.Long("start_date");
            if (phases.Count == 0)
            {
                if (start is { } pastStart && pastStart < current.StartDate && past.Any(x => x.StartDate == pastStart))
                {
                    continue; // a past phase, passed back as it was: it stays as it is
                }
                start ??= current.StartDate;
                if (start != current.StartDate)
                {
                    throw StripeError.Invalid($"{param}[start_date]", "You can not modify the start date of the current phase.");
                }
            }
            else
            {
                start ??= previousEnd;
                if (start != previousEnd)
                {
                    throw StripeError.Invalid($"{param}[start_date]",
                        $"The start_date of {param} must be the end_date of the phase before it: phases follow each other without gaps or overlaps.");
                }
            }

            var items = ParsePhaseItems(c, sub, p, param);
            var planPrice = c.Sim.State.Prices[items.First(i => !c.Sim.State.Prices[i.PriceId].IsMetered).PriceId];

            var end = p.Long("end_date");
            var duration = p.Sub("duration");
            if (end is not null && duration is not null)
            {
                throw StripeError.Invalid(param, $"You may only specify one of these parameters: {param}[duration], {param}[end_date].");
            }
            if (duration is not null)
            {
                var interval = duration.Required("interval");
                if (!Intervals.Contains(interval))
                {
                    throw StripeError.Invalid($"{param}[duration][interval]", "Invalid interval: must be one of day, month, week, or year");
                }
                var count = duration.Long("interval_count") ?? 1;
                if (count < 1)
                {
                    throw StripeError.Invalid($"{param}[duration][interval_count]", "Invalid interval_count: must be a positive integer.");
                }
                end = Calendar.Add(start.Value, interval, (int)count, 1);
            }
            else if (end is null)
            {
                if (i < given.Count - 1)
                {
                    throw StripeError.Missing($"{param}[end_date]");
                }
                end = Calendar.Add(start.Value, planPrice.Interval!, planPrice.IntervalCount, 1); // one billing period of the licensed price
            }
            if (end <= start)
            {
                throw StripeError.Invalid($"{param}[end_date]", "The end_date of a phase must be after its start_date.");
            }
            if (phases.Count == 0 && end <= now)
            {
                throw StripeError.Invalid($"{param}[end_date]", "The end_date of the current phase must be in the future.");
            }
            var anchor = p.Str("billing_cycle_anchor");
            if (anchor is not (null or "" or "automatic" or "phase_start"))
            {
                throw StripeError.Invalid($"{param}[billing_cycle_anchor]", "Invalid billing_cycle_anchor: must be one of automatic or phase_start");
            }
            phases.Add(new SchedulePhase
            {
                StartDate = start.Value,
                EndDate = end.Value,
                Items = items,
                Metadata = p.Map("metadata") ?? new(),
                ProrationBehavior = ProrationBehavior(p.Str("proration_behavior"), $"{param}[proration_behavior]"),
                BillingCycleAnchor = anchor is { Length: > 0 } ? anchor : null,
                TrialEnd = phases.Count == 0 ? current.TrialEnd : null,
            });
            previousEnd = end.Value;
        }
        if (phases.Count == 0)
        {
            throw StripeError.Invalid("phases", "The phases must include the current phase.");
        }
        return phases;
    }
}
