using System.Text.Json;
using System.Text.RegularExpressions;

namespace Billing.Catalog;

/// <summary>A catalog file that cannot be used, with every problem and its JSON path.</summary>
public sealed class CatalogException(string path, IReadOnlyList<string> errors)
    : Exception($"The catalog {path} is not valid:\n  " + string.Join("\n  ", errors))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}

/// <summary>Reads and validates a catalog file.</summary>
public static partial class CatalogLoader
{
    private static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    };

    private static readonly string[] Intervals = ["day", "week", "month", "year"];
    private static readonly string[] Windows = ["day", "month", "period"];
    private static readonly string[] Overages = ["block", "tokens", "bill"];

    /// <summary>Loads <paramref name="path"/>; throws <see cref="CatalogException"/> listing every error.</summary>
    public static BillingCatalog Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new CatalogException(path, [$"$: file not found ({Path.GetFullPath(path)})"]);
        }
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses and validates catalog JSON; throws <see cref="CatalogException"/> listing every error.</summary>
    public static BillingCatalog Parse(string json, string source = "catalog")
    {
        BillingCatalog? catalog;
        try
        {
            catalog = JsonSerializer.Deserialize<BillingCatalog>(json, Options);
        }
        catch (JsonException ex)
        {
            throw new CatalogException(source, [$"{ex.Path ?? "$"}: {ex.Message}"]);
        }
        if (catalog is null)
        {
            throw new CatalogException(source, ["$: empty"]);
        }

        catalog = WithDefaults(catalog);
        var errors = Validate(catalog);
        if (errors.Count > 0)
        {
            throw new CatalogException(source, errors);
        }
        return catalog;
    }

    /// <summary>Every problem of a catalog, each with its JSON path; empty when it is valid.</summary>
    public static IReadOnlyList<string> Validate(BillingCatalog catalog)
    {
        var errors = new List<string>();
        void Check(bool ok, string path, string message)
        {
            if (!ok)
            {
                errors.Add($"{path}: {message}");
            }
        }

        Check(IsCurrency(catalog.Currency), "$.currency", "a lowercase ISO currency such as \"usd\"");
        Check(catalog.Plans.Count > 0, "$.plans", "at least one plan");
        Check(catalog.FindPlan(catalog.FreePlan) is { IsFree: true }, "$.freePlan", $"must name a plan without prices (got \"{catalog.FreePlan}\")");
        Check(catalog.FindPlan(catalog.FreePlan) is not { Archived: true }, "$.freePlan", "the free plan cannot be archived");
        Check(catalog.GracePeriodDays >= 0, "$.gracePeriodDays", "0 or more");
        Check(catalog.RefundWindowDays >= 0, "$.refundWindowDays", "0 or more");
        Check(catalog.SignUpGrantTokens >= 0, "$.signUpGrantTokens", "0 or more");

        var lookupKeys = new HashSet<string>(StringComparer.Ordinal);
        var planIds = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < catalog.Plans.Count; i++)
        {
            var plan = catalog.Plans[i];
            var p = $"$.plans[{i}]";
            Check(IsId(plan.Id), $"{p}.id", "lowercase letters, digits, '-' or '_'");
            Check(planIds.Add(plan.Id), $"{p}.id", $"\"{plan.Id}\" is used twice");
            Check(!string.IsNullOrWhiteSpace(plan.Name), $"{p}.name", "required");
            Check(plan.TrialDays is >= 0 and <= 730, $"{p}.trialDays", "0 to 730");
            var intervals = new HashSet<string>(StringComparer.Ordinal);
            for (var j = 0; j < plan.Prices.Count; j++)
            {
                var price = plan.Prices[j];
                var q = $"{p}.prices[{j}]";
                Check(Intervals.Contains(price.Interval), $"{q}.interval", "one of day, week, month, year");
                Check(price.IntervalCount is >= 1 and <= 12, $"{q}.intervalCount", "1 to 12");
                // Stripe refuses a billing period longer than three years (3 years, 36 months, 156 weeks).
                Check(price.Interval != "year" || price.IntervalCount <= 3, $"{q}.intervalCount", "at most 3 with interval year (Stripe bills at most every three years)");
                Check(price.Amount > 0, $"{q}.amount", "a positive amount in the currency's minor unit");
                Check(IsCurrency(price.Currency), $"{q}.currency", "a lowercase ISO currency");
                Check(intervals.Add($"{price.Interval}/{price.IntervalCount}"), q, "two prices with the same interval");
                Check(lookupKeys.Add(price.LookupKey), $"{q}.lookupKey", $"\"{price.LookupKey}\" is used twice");
            }
            var meters = new HashSet<string>(StringComparer.Ordinal);
            for (var j = 0; j < plan.Meters.Count; j++)
            {
                var meter = plan.Meters[j];
                var q = $"{p}.meters[{j}]";
                Check(MeterName().IsMatch(meter.Meter ?? ""), $"{q}.meter", "a name such as \"ai.generation\"");
                Check(meters.Add(meter.Meter ?? ""), $"{q}.meter", $"\"{meter.Meter}\" is listed twice");
                Check(meter.Limit is null or >= 0, $"{q}.limit", "null (unlimited) or 0 or more");
                Check(Windows.Contains(meter.Window), $"{q}.window", "one of day, month, period");
                Check(Overages.Contains(meter.Overage), $"{q}.overage", "one of block, tokens, bill");
                // At most 10^9: a spend of up to 10^9 units then costs at most 10^18 tokens, which a long holds.
                Check(meter.TokensPerUnit is >= 1 and <= 1_000_000_000, $"{q}.tokensPerUnit", "from 1 to 1000000000");
                Check(meter.Overage != "bill" || !string.IsNullOrWhiteSpace(meter.StripeMeterEventName), $"{q}.stripeMeterEventName", "required when overage is bill");
                Check(meter.Window != "period" || !plan.IsFree, $"{q}.window", "a free plan has no billing period: use day or month");
                if (meter.Overage == "bill")
                {
                    Check(!plan.IsFree, $"{q}.overage", "a free plan has no subscription to bill overage on: use block or tokens");
                    Check(meter.StripeMeterEventName is null || EventNamePattern().IsMatch(meter.StripeMeterEventName), $"{q}.stripeMeterEventName",
                        "letters, digits, '_', '-' or '.', at most 100");
                    Check(meter.OverageUnitAmount is > 0 && decimal.Round(meter.OverageUnitAmount.Value, 12) == meter.OverageUnitAmount.Value,
                        $"{q}.overageUnitAmount", "required when overage is bill: the price of one unit in the minor unit, above 0, at most 12 decimals (0.5 = half a cent)");
                }
                else
                {
                    Check(meter.OverageUnitAmount is null, $"{q}.overageUnitAmount", "only with overage bill");
                }
            }
            for (var j = 0; j < plan.Features.Count; j++)
            {
                Check(!string.IsNullOrWhiteSpace(plan.Features[j]), $"{p}.features[{j}]", "not empty");
            }
            foreach (var (name, value) in plan.Limits)
            {
                Check(value is null or >= 0, $"{p}.limits.{name}", "null (unlimited) or 0 or more");
            }
        }

        var packIds = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < catalog.TokenPacks.Count; i++)
        {
            var pack = catalog.TokenPacks[i];
            var p = $"$.tokenPacks[{i}]";
            Check(IsId(pack.Id), $"{p}.id", "lowercase letters, digits, '-' or '_'");
            Check(packIds.Add(pack.Id), $"{p}.id", $"\"{pack.Id}\" is used twice");
            Check(!string.IsNullOrWhiteSpace(pack.Name), $"{p}.name", "required");
            Check(pack.Tokens > 0, $"{p}.tokens", "a positive number of tokens");
            Check(pack.Amount > 0, $"{p}.amount", "a positive amount in the currency's minor unit");
            Check(IsCurrency(pack.Currency), $"{p}.currency", "a lowercase ISO currency");
            Check(pack.ExpiresAfterDays is null or > 0, $"{p}.expiresAfterDays", "null (never) or 1 or more");
            Check(lookupKeys.Add(pack.LookupKey), $"{p}.lookupKey", $"\"{pack.LookupKey}\" is used twice");
        }

        // One Stripe meter per catalog meter: every plan reports a meter's overage under the same event name (a plan change
        // Usage has not heard of yet then still bills on whichever metered price the subscription holds), and an event name
        // belongs to one meter. Each plan price's overage price has its own lookup key.
        var billed = catalog.Plans.SelectMany(plan => plan.Meters.Where(m => m.Overage == "bill" && !string.IsNullOrWhiteSpace(m.StripeMeterEventName))
            .Select(m => (Plan: plan.Id, m.Meter, Event: m.StripeMeterEventName!))).ToList();
        foreach (var meter in billed.GroupBy(b => b.Meter).Where(g => g.Select(b => b.Event).Distinct().Count() > 1))
        {
            Check(false, "$.plans", $"meter \"{meter.Key}\" is billed under several stripeMeterEventNames ({string.Join(", ", meter.Select(b => $"{b.Plan}: {b.Event}").Distinct())}): "
                + "use one per meter; each plan's overageUnitAmount may differ");
        }
        foreach (var name in billed.GroupBy(b => b.Event).Where(g => g.Select(b => b.Meter).Distinct().Count() > 1))
        {
            Check(false, "$.plans", $"stripeMeterEventName \"{name.Key}\" is used by several meters ({string.Join(", ", name.Select(b => b.Meter).Distinct())}): one event name per meter");
        }
        foreach (var overage in catalog.AllOveragePrices())
        {
            Check(lookupKeys.Add(overage.LookupKey), "$.plans", $"the overage price's lookup key \"{overage.LookupKey}\" is also another price's lookupKey");
        }
        return errors;
    }

    private static BillingCatalog WithDefaults(BillingCatalog catalog) => catalog with
    {
        Plans = (catalog.Plans ?? []).Select(plan => plan with
        {
            Prices = (plan.Prices ?? []).Select(price => price with
            {
                Currency = string.IsNullOrEmpty(price.Currency) ? catalog.Currency : price.Currency,
                LookupKey = string.IsNullOrEmpty(price.LookupKey)
                    ? $"{plan.Id}_{price.Interval}{(price.IntervalCount == 1 ? "" : price.IntervalCount.ToString(System.Globalization.CultureInfo.InvariantCulture))}"
                    : price.LookupKey,
            }).ToList(),
            Meters = plan.Meters ?? [],
            Features = plan.Features ?? [],
            Limits = plan.Limits ?? new Dictionary<string, long?>(),
        }).ToList(),
        TokenPacks = (catalog.TokenPacks ?? []).Select(pack => pack with
        {
            Currency = string.IsNullOrEmpty(pack.Currency) ? catalog.Currency : pack.Currency,
            LookupKey = string.IsNullOrEmpty(pack.LookupKey) ? $"pack_{pack.Id}" : pack.LookupKey,
        }).ToList(),
        UnlimitedGroups = catalog.UnlimitedGroups ?? [],
    };

    private static bool IsId(string? id) => id is not null && IdPattern().IsMatch(id);

    private static bool IsCurrency(string? currency) => currency is not null && CurrencyPattern().IsMatch(currency);

    [GeneratedRegex("^[A-Za-z0-9_.-]{1,100}$")]
    private static partial Regex EventNamePattern();

    [GeneratedRegex("^[a-z0-9][a-z0-9_-]{0,63}$")]
    private static partial Regex IdPattern();

    [GeneratedRegex("^[a-z]{3}$")]
    private static partial Regex CurrencyPattern();

    [GeneratedRegex(@"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")]
    private static partial Regex MeterName();
}
