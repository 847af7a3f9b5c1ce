using Billing.Catalog;
using Billing.Usage.Core.Subscribers;
using Billing.Usage.Core.Windows;

namespace Billing.Usage.Core.Consuming;

/// <summary>The rules of POST /api/usage/consume that need no database.</summary>
public static class ConsumePolicy
{
    public const string NoSubscription = "no_subscription";
    public const string PaymentPastDue = "payment_past_due";
    public const string QuotaExhausted = "quota_exhausted";
    public const string InsufficientTokens = "insufficient_tokens";

    /// <summary>True when some plan of the catalog has the meter (else the request is 400 <c>unknown_meter</c>).</summary>
    public static bool IsKnownMeter(BillingCatalog catalog, string meter) => catalog.Plans.Any(p => p.FindMeter(meter) is not null);

    /// <summary>
    /// Decides a consume for a subscriber, given the groups the caller passed on from the user's token: those are the
    /// user's groups now; only when it passed none do the groups last seen on the user's own token count (a user taken out
    /// of an unlimited group must not stay unlimited until they next open a page of their own).
    /// </summary>
    public static ConsumeDecision Decide(BillingCatalog catalog, SubscriberState state, string meter, IEnumerable<string>? requestGroups, DateTimeOffset now)
    {
        if (catalog.IsUnlimited(requestGroups ?? state.Groups))
        {
            return new ConsumeDecision.AllowWithoutSpending("unlimited");
        }
        if (state.Access == SubscriberAccess.Suspended)
        {
            return new ConsumeDecision.Refuse(PaymentPastDue, "Payment is past due.",
                "The subscription's payment is past due beyond the grace period; update the payment method to continue.");
        }

        var plan = state.EffectivePlan(catalog);
        var allowance = plan.FindMeter(meter);
        if (plan.IsFree && (allowance is null || (allowance.Limit == 0 && WhenExhausted(allowance) != ExhaustedAction.Tokens)))
        {
            return new ConsumeDecision.Refuse(NoSubscription, "A subscription is needed.",
                $"The {plan.Name} plan includes no '{meter}'; subscribe to a plan that does.");
        }
        // A paid plan without the meter is an allowance of nothing: refused as exhausted, with the upgrade hint.
        allowance ??= new MeterAllowance { Meter = meter, Limit = 0, Window = UsageWindows.Month };
        if (state.Status is "trialing" or "past_due" && allowance.Overage == "bill")
        {
            // A trial has no paid invoice to put overage on (and may end without a card); a past-due subscription's card has
            // just failed (the grace period keeps the plan's allowance, not more billed usage): past the allowance it blocks.
            allowance = allowance with { Overage = "block" };
        }
        return new ConsumeDecision.Spend(allowance, UsageWindows.Current(allowance, state, now), allowance.Limit);
    }

    /// <summary>What an allowance that cannot cover the spend leads to (the meter's <c>overage</c>).</summary>
    public static ExhaustedAction WhenExhausted(MeterAllowance allowance) => allowance.Overage switch
    {
        "tokens" => ExhaustedAction.Tokens,
        "bill" when !string.IsNullOrWhiteSpace(allowance.StripeMeterEventName) => ExhaustedAction.Bill,
        _ => ExhaustedAction.Block,
    };

    /// <summary>
    /// The allowance that prices <paramref name="meter"/> in tokens (the first plan paying it with tokens), for a token
    /// claim whose subscriber no longer has such a plan; null when no plan does.
    /// </summary>
    public static MeterAllowance? TokenAllowance(BillingCatalog catalog, string meter) =>
        catalog.Plans.Select(p => p.FindMeter(meter)).FirstOrDefault(m => m is not null && WhenExhausted(m) == ExhaustedAction.Tokens);

    /// <summary>Purchased tokens a spend of <paramref name="quantity"/> costs on a <c>tokens</c> meter.</summary>
    public static long TokensFor(MeterAllowance allowance, long quantity) => checked(quantity * Math.Max(1, allowance.TokensPerUnit));

    /// <summary>
    /// How a spend on a <c>bill</c> meter divides between the window and billed overage: the window first, the rest
    /// overage. (The same rule runs inside the database, in <c>usage_consume_many</c>, where the counter is.)
    /// </summary>
    public static (long Quota, long Overage) SplitBilled(long usedBefore, long quantity, long limit)
    {
        var quota = Math.Min(quantity, Math.Max(0, limit - usedBefore));
        return (quota, quantity - quota);
    }

    /// <summary>True when a more expensive plan of the catalog has a larger allowance of the meter.</summary>
    public static bool CanUpgrade(BillingCatalog catalog, string currentPlanId, string meter, long? currentLimit)
    {
        if (currentLimit is null)
        {
            return false;
        }
        var rank = catalog.FindPlan(currentPlanId) is null ? 0 : catalog.Rank(currentPlanId);
        return catalog.Plans.Skip(rank + 1)
            .Select(p => p.FindMeter(meter))
            .Any(m => m is not null && (m.Limit is null || m.Limit > currentLimit));
    }
}
