using System.Globalization;
using Stripe;

namespace Billing.ServiceDefaults.Stripe;

/// <summary>
/// A downgrade within the billing interval puts the lower price on Stripe's item at once, without proration, and records
/// in the subscription's metadata that the user keeps the plan paid for until the period ends. Subscriptions writes that
/// record; Payments publishes the entitled plan from it. One rule for both, so that the plan a user is shown is the plan
/// they get.
/// </summary>
public static class EntitledPlans
{
    /// <summary>The plan paid for this period.</summary>
    public const string PlanKey = "entitledPlanId";
    /// <summary>Until when (Unix seconds): the end of the period paid for.</summary>
    public const string UntilKey = "entitledPlanUntil";
    /// <summary>The exact price paid for the entitled plan (a grandfathered one the catalog has since replaced).</summary>
    public const string PriceKey = "entitledPriceId";
    /// <summary>
    /// The lower price the downgrade put on the item. The record holds only while the item bills it: a plan switched in
    /// Stripe's customer portal (or the Dashboard) since then is what the user has and is billed for. Downgrades recorded
    /// before this key existed have none, and hold until the period ends.
    /// </summary>
    public const string LowerPriceKey = "downgradedPriceId";

    /// <summary>
    /// The plan the user paid for and until when, while a downgrade within the interval from it is pending: the period
    /// paid for has not rolled over, and the item still bills the lower price the downgrade put on it. Null otherwise.
    /// </summary>
    public static (string PlanId, DateTimeOffset Until)? Pending(Subscription subscription)
    {
        var metadata = subscription.Metadata;
        if (metadata?.GetValueOrDefault(PlanKey) is not { Length: > 0 } planId
            || !long.TryParse(metadata.GetValueOrDefault(UntilKey), NumberStyles.Integer, CultureInfo.InvariantCulture, out var seconds)
            || subscription.PlanItemOrNull() is not { } item)
        {
            return null;
        }
        var until = DateTimeOffset.FromUnixTimeSeconds(seconds);
        if (new DateTimeOffset(item.CurrentPeriodStart.ToUniversalTime(), TimeSpan.Zero) >= until)
        {
            return null; // renewed: the lower price is what was charged
        }
        return metadata.GetValueOrDefault(LowerPriceKey) is { Length: > 0 } lower && lower != item.Price?.Id ? null : (planId, until);
    }

    /// <summary>The metadata of a downgrade within the interval from <paramref name="planId"/> (paid at <paramref name="paidPriceId"/>
    /// until <paramref name="until"/>) to <paramref name="lowerPriceId"/>, added to <paramref name="metadata"/>.</summary>
    public static Dictionary<string, string> Record(Dictionary<string, string> metadata, string planId, string paidPriceId, string lowerPriceId,
        DateTime until)
    {
        metadata[PlanKey] = planId;
        metadata[PriceKey] = paidPriceId;
        metadata[LowerPriceKey] = lowerPriceId;
        metadata[UntilKey] = until.ToUniversalTime().Subtract(DateTime.UnixEpoch).TotalSeconds.ToString("0", CultureInfo.InvariantCulture);
        return metadata;
    }

    /// <summary>Clears the record (Stripe keeps metadata keys set to an empty value as removed).</summary>
    public static Dictionary<string, string> Clear(Dictionary<string, string> metadata)
    {
        metadata[PlanKey] = "";
        metadata[UntilKey] = "";
        metadata[PriceKey] = "";
        metadata[LowerPriceKey] = "";
        return metadata;
    }

    /// <summary>The record as <paramref name="subscription"/> holds it (empty values for what it lacks), to write it back.</summary>
    public static Dictionary<string, string> Copy(Dictionary<string, string> metadata, Subscription subscription)
    {
        foreach (var key in new[] { PlanKey, UntilKey, PriceKey, LowerPriceKey })
        {
            metadata[key] = subscription.Metadata?.GetValueOrDefault(key) ?? "";
        }
        return metadata;
    }
}
