namespace Billing.Usage.Core.Subscribers;

/// <summary>What a subscriber's plan gives them right now.</summary>
public enum SubscriberAccess
{
    /// <summary>No live subscription: the catalog's free plan.</summary>
    None,
    /// <summary>A trialing, active or (within grace) past-due subscription: the plan's allowances.</summary>
    Full,
    /// <summary>Past due beyond the grace period: consumes are refused with <c>payment_past_due</c>.</summary>
    Suspended,
}

public static class SubscriberAccessNames
{
    public static string ToName(this SubscriberAccess access) => access switch
    {
        SubscriberAccess.Full => "full",
        SubscriberAccess.Suspended => "suspended",
        _ => "none",
    };

    public static SubscriberAccess Parse(string? name) => name switch
    {
        "full" => SubscriberAccess.Full,
        "suspended" => SubscriberAccess.Suspended,
        _ => SubscriberAccess.None,
    };
}
