namespace Billing.Catalog;

/// <summary>
/// Plans, prices, meters, features, limits and token packs: one JSON file (<c>BILLING_CATALOG</c>) that every service
/// loads at start. Stripe prices are found by <see cref="Price.LookupKey"/>, so nobody copies price ids by hand.
/// </summary>
public sealed record BillingCatalog
{
    /// <summary>Default lowercase ISO currency of prices and packs that name none.</summary>
    public string Currency { get; init; } = "usd";
    /// <summary>The plan a user without a subscription is on.</summary>
    public required string FreePlan { get; init; }
    /// <summary>Days a past-due subscription keeps access after a failed payment.</summary>
    public int GracePeriodDays { get; init; } = 3;
    /// <summary>Days after a payment within which a refund needs no <c>force</c>.</summary>
    public int RefundWindowDays { get; init; } = 7;
    /// <summary>Members of these groups (the token's <c>groups</c>) have unlimited access without a subscription.</summary>
    public IReadOnlyList<string> UnlimitedGroups { get; init; } = [];
    /// <summary>Tokens granted once to every new user (0 = none).</summary>
    public long SignUpGrantTokens { get; init; }
    /// <summary>When false, checkout of new subscriptions answers 503; existing subscriptions are untouched.</summary>
    public bool NewSubscriptionsEnabled { get; init; } = true;
    /// <summary>Plans, cheapest first: the order decides upgrade (now) versus downgrade (at period end).</summary>
    public required IReadOnlyList<Plan> Plans { get; init; }
    /// <summary>One-time token packs.</summary>
    public IReadOnlyList<TokenPack> TokenPacks { get; init; } = [];

    /// <summary>The plan with this id, or null.</summary>
    public Plan? FindPlan(string? id) => Plans.FirstOrDefault(p => string.Equals(p.Id, id, StringComparison.Ordinal));

    /// <summary>The free plan.</summary>
    public Plan Free => FindPlan(FreePlan)!;

    /// <summary>The token pack with this id, or null.</summary>
    public TokenPack? FindPack(string? id) => TokenPacks.FirstOrDefault(p => string.Equals(p.Id, id, StringComparison.Ordinal));

    /// <summary>The plan and price a Stripe price lookup key belongs to.</summary>
    public (Plan Plan, Price Price)? FindByLookupKey(string? lookupKey)
    {
        foreach (var plan in Plans)
        {
            foreach (var price in plan.Prices)
            {
                if (string.Equals(price.LookupKey, lookupKey, StringComparison.Ordinal))
                {
                    return (plan, price);
                }
            }
        }
        return null;
    }

    /// <summary>True when a member of any of <paramref name="groups"/> has unlimited access.</summary>
    public bool IsUnlimited(IEnumerable<string> groups) => groups.Any(g => UnlimitedGroups.Contains(g, StringComparer.Ordinal));

    /// <summary>
    /// The metered prices a subscription to <paramref name="plan"/> at <paramref name="price"/> carries beside its plan price,
    /// one per <c>bill</c> meter (empty when the plan bills no overage); lookup key <c>{price}_overage_{event}</c>.
    /// </summary>
    public static IReadOnlyList<OveragePrice> OveragePrices(Plan plan, Price price) =>
        plan.Meters
            .Where(m => m.Overage == "bill" && !string.IsNullOrWhiteSpace(m.StripeMeterEventName))
            .Select(m => new OveragePrice($"{price.LookupKey}_overage_{m.StripeMeterEventName}",
                m.StripeMeterEventName!, m.Meter, m.OverageUnitAmount ?? 0, price.Currency, price.Interval, price.IntervalCount))
            .ToList();

    /// <summary>Every metered overage price the catalog's plans need in Stripe.</summary>
    public IReadOnlyList<OveragePrice> AllOveragePrices() =>
        Plans.SelectMany(plan => plan.Prices.SelectMany(price => OveragePrices(plan, price))).ToList();

    /// <summary>Position of a plan in the catalog (higher = more expensive tier).</summary>
    public int Rank(string planId) => Plans.Select((p, i) => (p, i)).FirstOrDefault(x => x.p.Id == planId).i;
}

/// <summary>A subscription plan.</summary>
public sealed record Plan
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public string Description { get; init; } = "";
    /// <summary>Free trial days for a new subscription (0 = none).</summary>
    public int TrialDays { get; init; }
    /// <summary>Whether a trial needs a card up front (Stripe Checkout <c>payment_method_collection</c>).</summary>
    public bool TrialRequiresPaymentMethod { get; init; } = true;
    /// <summary>Recurring prices; empty for the free plan.</summary>
    public IReadOnlyList<Price> Prices { get; init; } = [];
    /// <summary>Allowances per meter.</summary>
    public IReadOnlyList<MeterAllowance> Meters { get; init; } = [];
    /// <summary>Boolean features the plan unlocks.</summary>
    public IReadOnlyList<string> Features { get; init; } = [];
    /// <summary>Numeric limits (null = unlimited), e.g. <c>projects</c>.</summary>
    public IReadOnlyDictionary<string, long?> Limits { get; init; } = new Dictionary<string, long?>();
    /// <summary>
    /// No longer offered: not sold in a new checkout or plan change, still the plan of those who have it (their
    /// allowances, features and prices stay as they are). Removing a plan from the file instead would move its
    /// subscribers to the free plan's allowance while Stripe goes on charging them.
    /// </summary>
    public bool Archived { get; init; }

    /// <summary>True for a plan anyone has without paying.</summary>
    public bool IsFree => Prices.Count == 0;

    /// <summary>The price for an interval, or null.</summary>
    public Price? FindPrice(string interval, int intervalCount) =>
        Prices.FirstOrDefault(p => p.Interval == interval && p.IntervalCount == intervalCount);

    /// <summary>The allowance for a meter, or null when the plan does not have the meter.</summary>
    public MeterAllowance? FindMeter(string meter) => Meters.FirstOrDefault(m => m.Meter == meter);
}

/// <summary>A recurring price of a plan.</summary>
public sealed record Price
{
    /// <summary><c>day</c>, <c>week</c>, <c>month</c> or <c>year</c>.</summary>
    public required string Interval { get; init; }
    /// <summary>Intervals per period: 3 with <c>month</c> is quarterly.</summary>
    public int IntervalCount { get; init; } = 1;
    /// <summary>Amount in the currency's minor unit.</summary>
    public required long Amount { get; init; }
    public string Currency { get; init; } = "usd";
    /// <summary>Stripe lookup key; defaults to <c>{plan}_{interval}</c> (or <c>{plan}_{interval}{count}</c>).</summary>
    public string LookupKey { get; init; } = "";
}

/// <summary>How a meter is allowed, reset and what happens past the allowance.</summary>
public sealed record MeterAllowance
{
    /// <summary>Meter name, e.g. <c>ai.generation</c>.</summary>
    public required string Meter { get; init; }
    /// <summary>Allowance per window; null = unlimited.</summary>
    public long? Limit { get; init; }
    /// <summary><c>day</c> (UTC midnight), <c>month</c> (anchored on the subscription start) or <c>period</c> (the billing period).</summary>
    public string Window { get; init; } = "month";
    /// <summary>Past the allowance: <c>block</c>, <c>tokens</c> (spend purchased tokens) or <c>bill</c> (metered overage).</summary>
    public string Overage { get; init; } = "block";
    /// <summary>Purchased tokens one unit of the meter costs when <see cref="Overage"/> is <c>tokens</c>.</summary>
    public long TokensPerUnit { get; init; } = 1;
    /// <summary>Stripe billing meter event name for <c>bill</c> overage.</summary>
    public string? StripeMeterEventName { get; init; }
    /// <summary>
    /// What one unit past the allowance costs when <see cref="Overage"/> is <c>bill</c>, in the price's minor unit; fractions
    /// are allowed (<c>0.5</c> = half a cent). Stripe invoices the period's sum at the renewal.
    /// </summary>
    public decimal? OverageUnitAmount { get; init; }
}

/// <summary>
/// A metered Stripe price that bills <c>bill</c> overage: the companion of one plan price for one meter, on the Stripe
/// Billing Meter of <see cref="EventName"/> (one per catalog meter, whatever the plan), at the plan's
/// <see cref="UnitAmount"/>. Every plan reports a meter's overage to the same Stripe meter, so whichever of these prices a
/// subscription holds when the usage happens bills it — also while Usage has not yet heard of a plan change.
/// </summary>
public sealed record OveragePrice(string LookupKey, string EventName, string Meter, decimal UnitAmount, string Currency, string Interval, int IntervalCount)
{
    /// <summary>Stripe product of the metered prices of one meter event name.</summary>
    public string ProductId => $"billing_overage_{EventName}";
}

/// <summary>A one-time pack of purchased tokens.</summary>
public sealed record TokenPack
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required long Tokens { get; init; }
    public required long Amount { get; init; }
    public string Currency { get; init; } = "usd";
    /// <summary>Stripe lookup key; defaults to <c>pack_{id}</c>.</summary>
    public string LookupKey { get; init; } = "";
    /// <summary>Days until the pack's tokens expire; null = never.</summary>
    public int? ExpiresAfterDays { get; init; }
}
