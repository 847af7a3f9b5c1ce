using System.Globalization;
using Billing.Catalog;
using Stripe;
using Stripe.Billing;

namespace Billing.Subscriptions.Api.Stripe;

/// <summary>
/// <c>catalog check FILE</c>, <c>catalog push [FILE]</c> and <c>catalog diff [FILE]</c> (run by <c>deploy/billing catalog …</c>):
/// validates a catalog, creates its products and prices in the configured Stripe account idempotently, by lookup key, and
/// lists where Stripe's prices differ from the file. Prices are
/// immutable in Stripe: a changed amount creates a new price that takes over the lookup key, and the old one is
/// deactivated (existing subscriptions keep it). Overage the plans bill (<c>overage: "bill"</c>) gets a Stripe Billing Meter
/// per event name (summing the <c>value</c> of the meter events Usage sends, customer in <c>stripe_customer_id</c>) and a
/// metered price per event name, currency and interval (<see cref="BillingCatalog.AllOveragePrices"/>).
/// </summary>
public static class CatalogCommands
{
    public static async Task<int> RunAsync(string[] args, IConfiguration configuration)
    {
        var verb = args.ElementAtOrDefault(0);
        var path = args.ElementAtOrDefault(1) ?? configuration["BILLING_CATALOG"];
        if (verb is not ("check" or "push" or "diff") || string.IsNullOrEmpty(path))
        {
            await Console.Error.WriteLineAsync("usage: catalog check FILE | catalog push [FILE] | catalog diff [FILE]  (FILE defaults to BILLING_CATALOG)");
            return 2;
        }

        BillingCatalog catalog;
        try
        {
            catalog = CatalogLoader.Load(path);
        }
        catch (CatalogException ex)
        {
            await Console.Error.WriteLineAsync(ex.Message);
            return 1;
        }
        Console.WriteLine($"{path}: valid ({catalog.Plans.Count} plans, {catalog.Plans.Sum(p => p.Prices.Count)} prices, {catalog.TokenPacks.Count} token packs)");
        if (verb == "check")
        {
            return 0;
        }

        var key = configuration["STRIPE_SECRET_KEY"];
        if (string.IsNullOrWhiteSpace(key))
        {
            await Console.Error.WriteLineAsync("STRIPE_SECRET_KEY is not set");
            return 1;
        }
        var options = new StripeClientOptions { ApiKey = key, HttpClient = new SystemNetHttpClient(new HttpClient(), maxNetworkRetries: 3) };
        if (configuration["STRIPE_API_BASE"] is { Length: > 0 } apiBase)
        {
            options.ApiBase = apiBase.TrimEnd('/');
        }
        if (verb == "diff")
        {
            return await DiffAsync(catalog, new StripeClient(options));
        }
        var pusher = new Pusher(new StripeClient(options));
        try
        {
            // Meters first: one that cannot be used stops the push before any price has changed.
            var meterIds = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var overage in catalog.AllOveragePrices().DistinctBy(o => o.EventName))
            {
                meterIds[overage.EventName] = await pusher.EnsureMeterAsync(overage.EventName, overage.Meter);
            }
            foreach (var plan in catalog.Plans.Where(p => !p.IsFree))
            {
                await pusher.EnsureProductAsync($"billing_plan_{plan.Id}", plan.Name, plan.Description, "plan", plan.Id);
            }
            foreach (var pack in catalog.TokenPacks)
            {
                await pusher.EnsureProductAsync($"billing_pack_{pack.Id}", pack.Name, $"{pack.Tokens:N0} tokens", "token_pack", pack.Id);
            }
            foreach (var overage in catalog.AllOveragePrices().DistinctBy(o => o.ProductId))
            {
                await pusher.EnsureProductAsync(overage.ProductId, $"Overage: {overage.Meter}", $"{overage.Meter} past the plan's allowance", "overage",
                    overage.EventName);
            }
            foreach (var spec in PlanSpecs(catalog).Concat(PackSpecs(catalog))
                         .Concat(catalog.AllOveragePrices().Select(o => OverageSpec(o, meterIds[o.EventName]))))
            {
                await pusher.EnsurePriceAsync(spec);
            }
        }
        catch (CatalogPushException ex)
        {
            await Console.Error.WriteLineAsync("catalog push: " + ex.Message);
            return 1;
        }
        Console.WriteLine($"catalog push: {pusher.Created} created, {pusher.Replaced} replaced, {pusher.Unchanged} unchanged");
        return 0;
    }

    /// <summary>
    /// <c>catalog diff</c>: whether Stripe's active price under each of the file's lookup keys bills what the file says
    /// (amount, currency, interval, and for overage the meter). The price a user sees (<c>GET /api/plans</c>, from the file) and
    /// the one a checkout charges (Stripe's, by lookup key) differ until a push: exit 1 lists where.
    /// </summary>
    private static async Task<int> DiffAsync(BillingCatalog catalog, IStripeClient stripe)
    {
        var meterIds = new Dictionary<string, string>(StringComparer.Ordinal);
        await foreach (var meter in new MeterService(stripe).ListAutoPagingAsync(new MeterListOptions { Status = "active", Limit = 100 }))
        {
            meterIds[meter.EventName] = meter.Id;
        }
        var wanted = PlanSpecs(catalog).Concat(PackSpecs(catalog))
            .Concat(catalog.AllOveragePrices().Select(o => OverageSpec(o, meterIds.GetValueOrDefault(o.EventName) ?? $"(no active meter for {o.EventName})")))
            .ToList();
        var differences = new List<string>();
        foreach (var spec in wanted)
        {
            var price = (await new PriceService(stripe).ListAsync(new PriceListOptions { LookupKeys = [spec.LookupKey], Active = true, Limit = 1 })).Data.FirstOrDefault();
            var file = spec.Describe();
            if (price is null)
            {
                differences.Add($"{spec.LookupKey}: {file} in the file, no active price in Stripe");
                continue;
            }
            var theirs = PriceSpec.Describe(price);
            if (theirs != file)
            {
                differences.Add($"{spec.LookupKey}: {file} in the file, {theirs} in Stripe ({price.Id})");
            }
        }
        foreach (var line in differences)
        {
            Console.WriteLine("  DIFF " + line);
        }
        Console.WriteLine(differences.Count == 0
            ? $"catalog diff: Stripe bills every one of the {wanted.Count} prices as the file says"
            : $"catalog diff: {differences.Count} of {wanted.Count} prices differ from Stripe; 'catalog push' makes Stripe follow the file");
        return differences.Count == 0 ? 0 : 1;
    }

    private static IEnumerable<PriceSpec> PlanSpecs(BillingCatalog catalog) =>
        catalog.Plans.Where(p => !p.IsFree).SelectMany(plan => plan.Prices.Select(price => new PriceSpec($"billing_plan_{plan.Id}", price.LookupKey,
            price.Amount, price.Currency, price.Interval, price.IntervalCount, new Dictionary<string, string> { ["planId"] = plan.Id })));

    private static IEnumerable<PriceSpec> PackSpecs(BillingCatalog catalog) =>
        catalog.TokenPacks.Select(pack => new PriceSpec($"billing_pack_{pack.Id}", pack.LookupKey, pack.Amount, pack.Currency, null, 1,
            new Dictionary<string, string> { ["packId"] = pack.Id, ["tokens"] = pack.Tokens.ToString(CultureInfo.InvariantCulture) }));

    private static PriceSpec OverageSpec(OveragePrice overage, string meterId) =>
        new(overage.ProductId, overage.LookupKey, overage.UnitAmount, overage.Currency, overage.Interval, overage.IntervalCount,
            new Dictionary<string, string> { ["meter"] = overage.Meter, ["eventName"] = overage.EventName }, meterId);

    /// <summary>What stops a push before it changes a price, with a message for the operator.</summary>
    private sealed class CatalogPushException(string message) : Exception(message);

    /// <summary>Where Usage's meter events put the Stripe customer and the quantity (<c>OverageReporter</c>).</summary>
    private const string MeterCustomerKey = "stripe_customer_id";
    private const string MeterValueKey = "value";

    /// <summary>
    /// A price as the file wants it: licensed (<see cref="MeterId"/> null; <see cref="Amount"/> whole) or metered on a Billing
    /// Meter (<see cref="Amount"/> per unit, fractions allowed); one-time when <see cref="Interval"/> is null.
    /// </summary>
    private sealed record PriceSpec(string Product, string LookupKey, decimal Amount, string Currency, string? Interval, int IntervalCount,
        Dictionary<string, string> Metadata, string? MeterId = null)
    {
        public bool Matches(global::Stripe.Price p) => p.ProductId == Product && Describe(p) == Describe();

        /// <summary>What the file bills, e.g. <c>500 usd every 1 month</c> or <c>0.5 usd per unit on mtr_… every 1 month</c>.</summary>
        public string Describe() => Text(Amount, MeterId, Currency, Interval, IntervalCount);

        /// <summary>What Stripe's price bills, in the same words.</summary>
        public static string Describe(global::Stripe.Price p) => p.Recurring?.UsageType == "metered"
            ? Text(p.UnitAmountDecimal ?? p.UnitAmount ?? 0, p.Recurring.Meter ?? "(no meter)", p.Currency, p.Recurring.Interval, (int)p.Recurring.IntervalCount)
            : Text(p.UnitAmount ?? 0, null, p.Currency, p.Recurring?.Interval, (int)(p.Recurring?.IntervalCount ?? 1));

        private static string Text(decimal amount, string? meterId, string currency, string? interval, int intervalCount) =>
            $"{amount.ToString("0.############", CultureInfo.InvariantCulture)} {currency}{(meterId is null ? "" : $" per unit on {meterId}")}"
            + (interval is null ? "" : $" every {intervalCount} {interval}");
    }

    private sealed class Pusher(IStripeClient stripe)
    {
        public int Created { get; private set; }
        public int Replaced { get; private set; }
        public int Unchanged { get; private set; }

        public async Task<string> EnsureProductAsync(string id, string name, string description, string kind, string catalogId)
        {
            var products = new ProductService(stripe);
            try
            {
                var existing = await products.GetAsync(id);
                if (existing.Name != name || (existing.Description ?? "") != description || !existing.Active)
                {
                    await products.UpdateAsync(id, new ProductUpdateOptions { Name = name, Description = description.Length > 0 ? description : null, Active = true });
                    Console.WriteLine($"  updated product {id}");
                }
                return id;
            }
            catch (StripeException ex) when (ex.StripeError?.Code == "resource_missing")
            {
                var options = new ProductCreateOptions
                {
                    Id = id,
                    Name = name,
                    Metadata = new Dictionary<string, string> { ["billing_kind"] = kind, ["billing_id"] = catalogId },
                };
                if (description.Length > 0)
                {
                    options.Description = description;
                }
                await products.CreateAsync(options, new RequestOptions { IdempotencyKey = "billing-product-" + id });
                Console.WriteLine($"  created product {id}");
                return id;
            }
        }

        /// <summary>
        /// The active Billing Meter of <paramref name="eventName"/>: found (reactivated if it was deactivated) or created. A meter
        /// Billing did not make must read the customer and the value where Usage puts them, or its events would count for nobody.
        /// </summary>
        public async Task<string> EnsureMeterAsync(string eventName, string meterName)
        {
            var meters = new MeterService(stripe);
            var found = new List<Meter>();
            await foreach (var meter in meters.ListAutoPagingAsync(new MeterListOptions { Limit = 100 }))
            {
                if (meter.EventName == eventName)
                {
                    found.Add(meter);
                }
            }
            // Every event counts: a pre-aggregated meter (event_time_window hour/day) keeps only the last event of each window,
            // and Usage sends one event per spend.
            bool ReadsWhatUsageSends(Meter m) => m.CustomerMapping?.EventPayloadKey == MeterCustomerKey
                && (m.ValueSettings?.EventPayloadKey ?? MeterValueKey) == MeterValueKey && m.DefaultAggregation?.Formula == "sum"
                && string.IsNullOrEmpty(m.EventTimeWindow);
            if (found.FirstOrDefault(m => m.Status == "active") is { } active)
            {
                if (!ReadsWhatUsageSends(active))
                {
                    throw new CatalogPushException($"Stripe's meter {active.Id} for \"{eventName}\" reads the customer from \"{active.CustomerMapping?.EventPayloadKey}\" "
                        + $"and the value from \"{active.ValueSettings?.EventPayloadKey}\" with formula {active.DefaultAggregation?.Formula}"
                        + (string.IsNullOrEmpty(active.EventTimeWindow) ? "" : $", keeping one event per {active.EventTimeWindow}")
                        + $"; Usage sends \"{MeterCustomerKey}\" and \"{MeterValueKey}\" to be summed, one event per spend. Use another "
                        + "stripeMeterEventName, or deactivate that meter.");
                }
                Unchanged++;
                Console.WriteLine($"  unchanged meter {eventName} ({active.Id})");
                return active.Id;
            }
            if (found.FirstOrDefault(ReadsWhatUsageSends) is { } inactive)
            {
                await meters.ReactivateAsync(inactive.Id);
                Console.WriteLine($"  reactivated meter {eventName} ({inactive.Id})");
                return inactive.Id;
            }
            var created = await meters.CreateAsync(new MeterCreateOptions
            {
                DisplayName = $"Billing overage: {meterName}",
                EventName = eventName,
                DefaultAggregation = new MeterDefaultAggregationOptions { Formula = "sum" },
                CustomerMapping = new MeterCustomerMappingOptions { Type = "by_id", EventPayloadKey = MeterCustomerKey },
                ValueSettings = new MeterValueSettingsOptions { EventPayloadKey = MeterValueKey },
            }, new RequestOptions { IdempotencyKey = $"billing-meter-{eventName}-{found.Count}" });
            Created++;
            Console.WriteLine($"  created meter {eventName} ({created.Id})");
            return created.Id;
        }

        public async Task EnsurePriceAsync(PriceSpec spec)
        {
            var prices = new PriceService(stripe);
            var existing = (await prices.ListAsync(new PriceListOptions { LookupKeys = [spec.LookupKey], Limit = 1 })).Data.FirstOrDefault();
            if (existing is not null && !existing.ProductId.StartsWith("billing_", StringComparison.Ordinal))
            {
                // Another product on the same Stripe account: taking its key over would change what it charges, and archive
                // its price.
                throw new CatalogPushException($"The lookup key \"{spec.LookupKey}\" belongs to price {existing.Id} of product {existing.ProductId}, "
                    + "which is not one of Billing's. Free the key in Stripe, or give the plan (or pack) another id.");
            }
            if (existing is not null && existing.Active && spec.Matches(existing))
            {
                Unchanged++;
                Console.WriteLine($"  unchanged {spec.LookupKey} ({existing.Id})");
                await ArchiveLeftoversAsync(prices, spec, existing);
                return;
            }

            var options = new PriceCreateOptions
            {
                Product = spec.Product,
                Currency = spec.Currency,
                LookupKey = spec.LookupKey,
                TransferLookupKey = existing is not null,
                Metadata = spec.Metadata,
            };
            if (spec.MeterId is null)
            {
                options.UnitAmount = (long)spec.Amount;
            }
            else
            {
                options.UnitAmountDecimal = spec.Amount;
            }
            if (spec.Interval is not null)
            {
                options.Recurring = new PriceRecurringOptions
                {
                    Interval = spec.Interval, IntervalCount = spec.IntervalCount,
                    UsageType = spec.MeterId is null ? null : "metered", Meter = spec.MeterId,
                };
            }
            // The price being replaced is part of the key: reverting an amount (A → B → A) within Stripe's 24 h must create a
            // new price, not replay the first one (whose request had another transfer_lookup_key, an idempotency error).
            var idempotency = $"billing-price-{spec.LookupKey}-{spec.Product}-{spec.Amount.ToString(CultureInfo.InvariantCulture)}-{spec.Currency}-{spec.Interval}-{spec.IntervalCount}-{spec.MeterId}-{existing?.Id ?? "new"}";
            var created = await prices.CreateAsync(options, new RequestOptions { IdempotencyKey = idempotency });
            if (existing is not null && existing.Id != created.Id)
            {
                await prices.UpdateAsync(existing.Id, new PriceUpdateOptions { Active = false });
                Replaced++;
                Console.WriteLine($"  replaced {spec.LookupKey}: {existing.Id} -> {created.Id}");
            }
            else
            {
                Created++;
                Console.WriteLine($"  created {spec.LookupKey} ({created.Id})");
            }
        }

        /// <summary>
        /// Archives the active prices of <paramref name="product"/> for the same interval that hold no lookup key: a push
        /// that died between creating a price (which took the key over) and archiving the one it replaced left that one
        /// active, and a re-run found the key's price unchanged. Subscriptions on an archived price keep it.
        /// </summary>
        private static async Task ArchiveLeftoversAsync(PriceService prices, PriceSpec spec, global::Stripe.Price current)
        {
            var active = await prices.ListAsync(new PriceListOptions { Product = spec.Product, Active = true, Limit = 100 });
            foreach (var leftover in active.Data.Where(p => p.Id != current.Id && string.IsNullOrEmpty(p.LookupKey) && p.Recurring?.Interval == spec.Interval
                         && (spec.Interval is null || p.Recurring?.IntervalCount == spec.IntervalCount) && p.Currency == spec.Currency))
            {
                await prices.UpdateAsync(leftover.Id, new PriceUpdateOptions { Active = false });
                Console.WriteLine($"  archived {leftover.Id}, left active by an earlier push that replaced it with {current.Id}");
            }
        }
    }
}
