using Billing.Catalog;
using Stripe;

namespace Billing.Subscriptions.Api.Stripe;

/// <summary>
/// <c>catalog check FILE</c>, <c>catalog push [FILE]</c> and <c>catalog diff [FILE]</c> (run by <c>deploy/billing catalog …</c>):
/// validates a catalog, creates its products and prices in the configured Stripe account idempotently, by lookup key, and
/// lists where Stripe's prices differ from the file. Prices are
/// immutable in Stripe: a changed amount creates a new price that takes over the lookup key, and the old one is
/// deactivated (existing subscriptions keep it).
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
        foreach (var plan in catalog.Plans.Where(p => !p.IsFree))
        {
            var product = await pusher.EnsureProductAsync($"billing_plan_{plan.Id}", plan.Name, plan.Description, "plan", plan.Id);
            foreach (var price in plan.Prices)
            {
                await pusher.EnsurePriceAsync(product, price.LookupKey, price.Amount, price.Currency, price.Interval, price.IntervalCount,
                    new Dictionary<string, string> { ["planId"] = plan.Id });
            }
        }
        foreach (var pack in catalog.TokenPacks)
        {
            var product = await pusher.EnsureProductAsync($"billing_pack_{pack.Id}", pack.Name, $"{pack.Tokens:N0} tokens", "token_pack", pack.Id);
            await pusher.EnsurePriceAsync(product, pack.LookupKey, pack.Amount, pack.Currency, null, 1,
                new Dictionary<string, string> { ["packId"] = pack.Id, ["tokens"] = pack.Tokens.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        }
        Console.WriteLine($"catalog push: {pusher.Created} created, {pusher.Replaced} replaced, {pusher.Unchanged} unchanged");
        return 0;
    }

    /// <summary>
    /// <c>catalog diff</c>: whether Stripe's active price under each of the file's lookup keys bills what the file says
    /// (amount, currency, interval). The price a user sees (<c>GET /api/plans</c>, from the file) and the one a checkout
    /// charges (Stripe's, by lookup key) differ until a push: exit 1 lists where.
    /// </summary>
    private static async Task<int> DiffAsync(BillingCatalog catalog, IStripeClient stripe)
    {
        var wanted = catalog.Plans.SelectMany(plan => plan.Prices.Select(p => (p.LookupKey, p.Amount, p.Currency, Interval: (string?)p.Interval, p.IntervalCount)))
            .Concat(catalog.TokenPacks.Select(pack => (pack.LookupKey, pack.Amount, pack.Currency, Interval: (string?)null, IntervalCount: 1)))
            .ToList();
        var differences = new List<string>();
        foreach (var (lookupKey, amount, currency, interval, intervalCount) in wanted)
        {
            var price = (await new PriceService(stripe).ListAsync(new PriceListOptions { LookupKeys = [lookupKey], Active = true, Limit = 1 })).Data.FirstOrDefault();
            var file = $"{amount} {currency}{(interval is null ? "" : $" every {intervalCount} {interval}")}";
            if (price is null)
            {
                differences.Add($"{lookupKey}: {file} in the file, no active price in Stripe");
                continue;
            }
            var theirs = $"{price.UnitAmount} {price.Currency}{(price.Recurring is null ? "" : $" every {price.Recurring.IntervalCount} {price.Recurring.Interval}")}";
            if (theirs != file)
            {
                differences.Add($"{lookupKey}: {file} in the file, {theirs} in Stripe ({price.Id})");
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

        public async Task EnsurePriceAsync(string product, string lookupKey, long amount, string currency, string? interval, int intervalCount,
            Dictionary<string, string> metadata)
        {
            var prices = new PriceService(stripe);
            var existing = (await prices.ListAsync(new PriceListOptions { LookupKeys = [lookupKey], Limit = 1 })).Data.FirstOrDefault();
            if (existing is not null && existing.Active && existing.UnitAmount == amount && existing.Currency == currency && existing.ProductId == product
                && existing.Recurring?.Interval == interval && (interval is null || existing.Recurring?.IntervalCount == intervalCount))
            {
                Unchanged++;
                Console.WriteLine($"  unchanged {lookupKey} ({existing.Id})");
                await ArchiveLeftoversAsync(prices, product, existing, interval, intervalCount);
                return;
            }

            var options = new PriceCreateOptions
            {
                Product = product,
                UnitAmount = amount,
                Currency = currency,
                LookupKey = lookupKey,
                TransferLookupKey = existing is not null,
                Metadata = metadata,
            };
            if (interval is not null)
            {
                options.Recurring = new PriceRecurringOptions { Interval = interval, IntervalCount = intervalCount };
            }
            // The price being replaced is part of the key: reverting an amount (A → B → A) within Stripe's 24 h must create a
            // new price, not replay the first one (whose request had another transfer_lookup_key, an idempotency error).
            var idempotency = $"billing-price-{lookupKey}-{product}-{amount}-{currency}-{interval}-{intervalCount}-{existing?.Id ?? "new"}";
            var created = await prices.CreateAsync(options, new RequestOptions { IdempotencyKey = idempotency });
            if (existing is not null && existing.Id != created.Id)
            {
                await prices.UpdateAsync(existing.Id, new PriceUpdateOptions { Active = false });
                Replaced++;
                Console.WriteLine($"  replaced {lookupKey}: {existing.Id} -> {created.Id}");
            }
            else
            {
                Created++;
                Console.WriteLine($"  created {lookupKey} ({created.Id})");
            }
        }

        /// <summary>
        /// Archives the active prices of <paramref name="product"/> for the same interval that hold no lookup key: a push
        /// that died between creating a price (which took the key over) and archiving the one it replaced left that one
        /// active, and a re-run found the key's price unchanged. Subscriptions on an archived price keep it.
        /// </summary>
        private static async Task ArchiveLeftoversAsync(PriceService prices, string product, global::Stripe.Price current, string? interval, int intervalCount)
        {
            var active = await prices.ListAsync(new PriceListOptions { Product = product, Active = true, Limit = 100 });
            foreach (var leftover in active.Data.Where(p => p.Id != current.Id && string.IsNullOrEmpty(p.LookupKey)
                         && p.Recurring?.Interval == interval && (interval is null || p.Recurring?.IntervalCount == intervalCount)))
            {
                await prices.UpdateAsync(leftover.Id, new PriceUpdateOptions { Active = false });
                Console.WriteLine($"  archived {leftover.Id}, left active by an earlier push that replaced it with {current.Id}");
            }
        }
    }
}
