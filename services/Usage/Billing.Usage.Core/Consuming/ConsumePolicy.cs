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

    /// <summary>True when some plan of the catalog has the meter (else the request is 400 <c>unknown_meter</c>).</summary>
    public static bool IsKnownMeter(BillingCatalog catalog, string meter) => catalog.Plans.Any(p => p.FindMeter(meter) is not null);

    /// <summary>Decides a consume for a subscriber, given the groups the caller passed on (if any).</summary>
    public static ConsumeDecision Decide(BillingCatalog catalog, SubscriberState state, string meter, IEnumerable<string> requestGroups, DateTimeOffset now)
    {
        if (catalog.IsUnlimited(requestGroups.Concat(state.Groups)))
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
        if (plan.IsFree && (allowance is null || allowance.Limit == 0))
        {
            return new ConsumeDecision.Refuse(NoSubscription, "A subscription is needed.",
                $"The {plan.Name} plan includes no '{meter}'; subscribe to a plan that does.");
        }
        // A paid plan without the meter is an allowance of nothing: refused as exhausted, with the upgrade hint.
        allowance ??= new MeterAllowance { Meter = meter, Limit = 0, Window = UsageWindows.Month };
        return new ConsumeDecision.Spend(allowance, UsageWindows.Current(allowance, state, now), allowance.Limit);
    }

    /// <summary>What an allowance that cannot cover the spend leads to. Token and billed overage come later.</summary>
    public static ExhaustedAction WhenExhausted(MeterAllowance allowance) => allowance.Overage switch
    {
        _ => ExhaustedAction.Block,
    };

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
