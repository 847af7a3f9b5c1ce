using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Infrastructure;
using Billing.StripeSimulator.Rendering;

namespace Billing.StripeSimulator.Api;

/// <summary>Customers, products and prices.</summary>
public static partial class CatalogApi
{
    public static void MapCatalogApi(this IEndpointRouteBuilder app)
    {
        app.MapStripe("POST", "/v1/customers", CreateCustomer);
        app.MapStripe("GET", "/v1/customers", ListCustomers);
        app.MapStripe("GET", "/v1/customers/search", SearchCustomers);
        app.MapStripe("GET", "/v1/customers/{id}", c => c.Expand(c.Sim.Json.Customer(c.Sim.Customer(c.Route("id")))));
        app.MapStripe("POST", "/v1/customers/{id}", UpdateCustomer);

        app.MapStripe("POST", "/v1/products", CreateProduct);
        app.MapStripe("GET", "/v1/products", ListProducts);
        app.MapStripe("GET", "/v1/products/{id}", c => c.Expand(c.Sim.Json.Product(c.Sim.Product(c.Route("id")))));
        app.MapStripe("POST", "/v1/products/{id}", UpdateProduct);

        app.MapStripe("POST", "/v1/prices", CreatePrice);
        app.MapStripe("GET", "/v1/prices", ListPrices);
        app.MapStripe("GET", "/v1/prices/{id}", c => c.Expand(c.Sim.Json.Price(c.Sim.Price(c.Route("id")))));
        app.MapStripe("POST", "/v1/prices/{id}", UpdatePrice);
    }

    private static JsonObject CreateCustomer(StripeCall c)
    {
        var customer = c.Sim.Engine.CreateCustomer(c.Form.Str("email"), c.Form.Str("name"), c.Form.Map("metadata"));
        customer.Description = c.Form.Str("description");
        return c.Expand(c.Sim.Json.Customer(customer));
    }

    private static JsonObject UpdateCustomer(StripeCall c)
    {
        var customer = c.Sim.Customer(c.Route("id"));
        var before = c.Sim.Json.Customer(customer);
        if (c.Form.Has("email"))
        {
            customer.Email = NullIfEmpty(c.Form.Str("email"));
        }
        if (c.Form.Has("name"))
        {
            customer.Name = NullIfEmpty(c.Form.Str("name"));
        }
        if (c.Form.Has("description"))
        {
            customer.Description = NullIfEmpty(c.Form.Str("description"));
        }
        c.ApplyMetadata(customer.Metadata, "metadata");
        var after = c.Sim.Json.Customer(customer);
        var diff = Engine.BillingEngine.Diff(before, after);
        if (diff.Count > 0)
        {
            c.Sim.State.Emit("customer.updated", after, diff);
        }
        return c.Expand(after);
    }

    private static JsonObject ListCustomers(StripeCall c)
    {
        var email = c.Form.Str("email");
        var items = c.Sim.State.Customers.Values
            .Where(x => email is null || string.Equals(x.Email, email, StringComparison.Ordinal))
            .OrderByDescending(x => c.Sim.State.Order(x.Id));
        return c.Sim.Page(items, x => x.Id, c.Sim.Json.Customer, c.Form, "/v1/customers");
    }

    [GeneratedRegex(@"^\s*(?:(metadata)\[\s*['""](?<key>[^'""]+)['""]\s*\]|(?<field>email|name|phone|description))\s*(?<op>:|~)\s*['""](?<value>[^'""]*)['""]\s*$")]
    private static partial Regex SearchClause();

    /// <summary>Stripe's search language, the part Billing uses: <c>metadata['k']:'v'</c>, <c>email:'x'</c>, joined by AND/OR.</summary>
    private static JsonObject SearchCustomers(StripeCall c)
    {
        var query = c.Form.Required("query");
        var useOr = Regex.IsMatch(query, @"\sOR\s");
        var clauses = Regex.Split(query, @"\s+(?:AND|OR)\s+");
        var predicates = new List<Func<Customer, bool>>();
        foreach (var clause in clauses)
        {
            var m = SearchClause().Match(clause);
            if (!m.Success)
            {
                throw StripeError.Invalid("query", $"The query `{query}` is invalid or not supported by the simulator.");
            }
            var value = m.Groups["value"].Value;
            var contains = m.Groups["op"].Value == "~";
            bool Matches(string? actual) => actual is not null && (contains ? actual.Contains(value, StringComparison.OrdinalIgnoreCase) : actual == value);
            if (m.Groups["key"].Success)
            {
                var key = m.Groups["key"].Value;
                predicates.Add(x => Matches(x.Metadata.GetValueOrDefault(key)));
            }
            else
            {
                var field = m.Groups["field"].Value;
                predicates.Add(x => Matches(field switch { "email" => x.Email, "name" => x.Name, "description" => x.Description, _ => null }));
            }
        }
        var limit = (int)(c.Form.Long("limit") ?? 10);
        var matches = c.Sim.State.Customers.Values
            .Where(x => useOr ? predicates.Any(p => p(x)) : predicates.All(p => p(x)))
            .OrderByDescending(x => c.Sim.State.Order(x.Id))
            .ToList();
        var data = new JsonArray(matches.Take(limit).Select(x => (JsonNode)c.Expand(c.Sim.Json.Customer(x))).ToArray());
        return new JsonObject
        {
            ["object"] = "search_result",
            ["data"] = data,
            ["has_more"] = matches.Count > limit,
            ["next_page"] = null,
            ["url"] = "/v1/customers/search",
        };
    }

    private static JsonObject CreateProduct(StripeCall c)
    {
        var state = c.Sim.State;
        var id = c.Form.Str("id");
        if (id is not null && state.Products.ContainsKey(id))
        {
            throw StripeError.Invalid("id", $"Product already exists.", "resource_already_exists");
        }
        var product = NewProduct(state, c.Form.Required("name"), id);
        product.Description = c.Form.Str("description");
        product.Active = c.Form.Bool("active") ?? true;
        product.Metadata = c.Form.Map("metadata") ?? new();
        var json = c.Sim.Json.Product(product);
        state.Emit("product.created", json);
        return c.Expand(json.DeepClone().AsObject());
    }

    private static Product NewProduct(SimState state, string name, string? id = null)
    {
        var product = new Product
        {
            Id = id ?? state.NewId("prod_", 14),
            Created = state.Now,
            Updated = state.Now,
            Name = name,
        };
        if (id is not null)
        {
            state.Register(id);
        }
        state.Products[product.Id] = product;
        return product;
    }

    private static JsonObject UpdateProduct(StripeCall c)
    {
        var product = c.Sim.Product(c.Route("id"));
        var before = c.Sim.Json.Product(product);
        if (c.Form.Str("name") is { Length: > 0 } name)
        {
            product.Name = name;
        }
        if (c.Form.Has("description"))
        {
            product.Description = NullIfEmpty(c.Form.Str("description"));
        }
        if (c.Form.Bool("active") is { } active)
        {
            product.Active = active;
        }
        if (c.Form.Str("default_price") is { } defaultPrice)
        {
            product.DefaultPriceId = defaultPrice.Length == 0 ? null : c.Sim.Price(defaultPrice, "default_price").Id;
        }
        c.ApplyMetadata(product.Metadata, "metadata");
        product.Updated = c.Sim.State.Now;
        var after = c.Sim.Json.Product(product);
        c.Sim.State.Emit("product.updated", after, Engine.BillingEngine.Diff(before, after));
        return c.Expand(after.DeepClone().AsObject());
    }

    private static JsonObject ListProducts(StripeCall c)
    {
        var active = c.Form.Bool("active");
        var ids = c.Form.List("ids");
        var items = c.Sim.State.Products.Values
            .Where(p => active is null || p.Active == active)
            .Where(p => ids.Count == 0 || ids.Contains(p.Id))
            .OrderByDescending(p => c.Sim.State.Order(p.Id));
        return c.Sim.Page(items, p => p.Id, c.Sim.Json.Product, c.Form, "/v1/products");
    }

    private static JsonObject CreatePrice(StripeCall c)
    {
        var state = c.Sim.State;
        var form = c.Form;
        var currency = form.Required("currency").ToLowerInvariant();
        var unitAmount = UnitAmount(form);
        string productId;
        if (form.Str("product") is { Length: > 0 } pid)
        {
            productId = c.Sim.Product(pid, "product").Id;
        }
        else if (form.Str("product_data", "name") is { Length: > 0 } productName)
        {
            var product = NewProduct(state, productName);
            product.Metadata = form.Map("product_data", "metadata") ?? new();
            state.Emit("product.created", c.Sim.Json.Product(product));
            productId = product.Id;
        }
        else
        {
            throw StripeError.Missing("product");
        }
        string? interval = null;
        var intervalCount = 1;
        var usageType = "licensed";
        string? meterId = null;
        if (form.Has("recurring"))
        {
            interval = form.Required("recurring", "interval");
            if (interval is not ("day" or "week" or "month" or "year"))
            {
                throw StripeError.Invalid("recurring[interval]", $"Invalid recurring[interval]: must be one of day, month, week, or year");
            }
            intervalCount = (int)(form.Long("recurring", "interval_count") ?? 1);
            if (intervalCount < 1 || (interval == "year" && intervalCount > 3) || (interval == "month" && intervalCount > 36))
            {
                throw StripeError.Invalid("recurring[interval_count]", "The maximum billing interval is three years.");
            }
            (usageType, meterId) = UsageType(c);
        }
        var price = new Price
        {
            Id = state.NewId("price_"),
            Created = state.Now,
            ProductId = productId,
            UnitAmount = decimal.Truncate(unitAmount) == unitAmount ? (long)unitAmount : 0,
            UnitAmountDecimal = decimal.Truncate(unitAmount) == unitAmount ? null : unitAmount,
            UsageType = usageType,
            MeterId = meterId,
            Currency = currency,
            Interval = interval,
            IntervalCount = intervalCount,
            Nickname = form.Str("nickname"),
            Active = form.Bool("active") ?? true,
            Metadata = form.Map("metadata") ?? new(),
        };
        SetLookupKey(c, price, form.Str("lookup_key"), form.Bool("transfer_lookup_key") ?? false);
        state.Prices[price.Id] = price;
        state.Emit("price.created", c.Sim.Json.Price(price));
        return c.Expand(c.Sim.Json.Price(price));
    }

    /// <summary><c>unit_amount</c> (whole minor units) or <c>unit_amount_decimal</c> (up to 12 decimal places), exactly one.</summary>
    private static decimal UnitAmount(Form form)
    {
        var whole = form.Long("unit_amount");
        var fractional = form.Decimal("unit_amount_decimal");
        if (whole is not null && fractional is not null)
        {
            throw StripeError.Invalid("unit_amount", "You may only specify one of these parameters: unit_amount, unit_amount_decimal.");
        }
        if (whole < 0)
        {
            throw StripeError.Invalid("unit_amount", "Invalid non-negative integer", "parameter_invalid_integer");
        }
        if (fractional < 0 || fractional is { } d && decimal.Round(d, 12) != d)
        {
            throw StripeError.Invalid("unit_amount_decimal", "Invalid decimal: unit_amount_decimal must be a non-negative decimal with at most 12 decimal places.", "parameter_invalid_integer");
        }
        return whole ?? fractional ?? throw StripeError.Missing("unit_amount");
    }

    /// <summary><c>recurring[usage_type]</c> (<c>licensed</c> by default) and, for a metered price, its active meter
    /// (<c>recurring[meter]</c>, required: usage-based prices are backed by billing meters).</summary>
    private static (string UsageType, string? MeterId) UsageType(StripeCall c)
    {
        var usageType = c.Form.Str("recurring", "usage_type") is { Length: > 0 } given ? given : "licensed";
        var meterId = c.Form.Str("recurring", "meter");
        if (usageType is not ("licensed" or "metered"))
        {
            throw StripeError.Invalid("recurring[usage_type]", "Invalid recurring[usage_type]: must be one of licensed or metered");
        }
        if (usageType == "licensed")
        {
            return string.IsNullOrEmpty(meterId)
                ? (usageType, null)
                : throw StripeError.Invalid("recurring[meter]", "`recurring[meter]` can only be set when `recurring[usage_type]` is `metered`.");
        }
        if (string.IsNullOrEmpty(meterId))
        {
            throw StripeError.Invalid("recurring[meter]", "A price with `recurring[usage_type]=metered` must be backed by a billing meter: pass `recurring[meter]`.");
        }
        var meter = c.Sim.Meter(meterId, "recurring[meter]");
        if (!meter.IsActive)
        {
            throw StripeError.Invalid("recurring[meter]", $"The billing meter `{meter.Id}` is inactive: a metered price needs an active meter.");
        }
        return (usageType, meter.Id);
    }

    private static void SetLookupKey(StripeCall c, Price price, string? lookupKey, bool transfer)
    {
        if (string.IsNullOrEmpty(lookupKey))
        {
            if (lookupKey == "")
            {
                price.LookupKey = null;
            }
            return;
        }
        var holder = c.Sim.State.Prices.Values.FirstOrDefault(p => p.LookupKey == lookupKey && p.Id != price.Id);
        if (holder is not null)
        {
            if (!transfer)
            {
                throw StripeError.Invalid("lookup_key", $"A price (`{holder.Id}`) already uses the lookup key `{lookupKey}`. Pass `transfer_lookup_key=true` to transfer it.", "lookup_key_already_exists");
            }
            var before = c.Sim.Json.Price(holder);
            holder.LookupKey = null;
            var after = c.Sim.Json.Price(holder);
            c.Sim.State.Emit("price.updated", after, Engine.BillingEngine.Diff(before, after));
        }
        price.LookupKey = lookupKey;
    }

    private static JsonObject UpdatePrice(StripeCall c)
    {
        var price = c.Sim.Price(c.Route("id"));
        var before = c.Sim.Json.Price(price);
        if (c.Form.Bool("active") is { } active)
        {
            price.Active = active;
        }
        if (c.Form.Has("lookup_key"))
        {
            SetLookupKey(c, price, c.Form.Str("lookup_key"), c.Form.Bool("transfer_lookup_key") ?? false);
        }
        if (c.Form.Has("nickname"))
        {
            price.Nickname = NullIfEmpty(c.Form.Str("nickname"));
        }
        c.ApplyMetadata(price.Metadata, "metadata");
        var after = c.Sim.Json.Price(price);
        var diff = Engine.BillingEngine.Diff(before, after);
        if (diff.Count > 0)
        {
            c.Sim.State.Emit("price.updated", after, diff);
        }
        return c.Expand(after.DeepClone().AsObject());
    }

    private static JsonObject ListPrices(StripeCall c)
    {
        var f = c.Form;
        var lookupKeys = f.List("lookup_keys");
        var active = f.Bool("active");
        var product = f.Str("product");
        var type = f.Str("type");
        var currency = f.Str("currency");
        var interval = f.Str("recurring", "interval");
        var usageType = f.Str("recurring", "usage_type");
        var meter = f.Str("recurring", "meter");
        var items = c.Sim.State.Prices.Values
            .Where(p => lookupKeys.Count == 0 || (p.LookupKey is not null && lookupKeys.Contains(p.LookupKey)))
            .Where(p => active is null || p.Active == active)
            .Where(p => product is null || p.ProductId == product)
            .Where(p => type is null || (type == "recurring") == p.IsRecurring)
            .Where(p => currency is null || p.Currency == currency)
            .Where(p => interval is null || p.Interval == interval)
            .Where(p => usageType is null || (p.IsRecurring && p.UsageType == usageType))
            .Where(p => meter is null || p.MeterId == meter)
            .OrderByDescending(p => c.Sim.State.Order(p.Id));
        return c.Sim.Page(items, p => p.Id, c.Sim.Json.Price, f, "/v1/prices");
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;
}
