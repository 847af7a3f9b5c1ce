using System.Net;
using Stripe;

namespace Billing.StripeSimulator.Tests;

public sealed class Following_Stripe_API_conventions : SimulatorSpec
{
    [Test]
    public void Should_answer_unknown_ids_with_404_resource_missing()
    {
        var ex = Assert.ThrowsAsync<StripeException>(() => new CustomerService(Stripe).GetAsync("cus_missing"));
        Assert.That(ex!.HttpStatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(ex.StripeError.Code, Is.EqualTo("resource_missing"));
        Assert.That(ex.StripeError.Param, Is.EqualTo("id"));
        Assert.That(ex.StripeError.Message, Is.EqualTo("No such customer: 'cus_missing'"));
        Assert.ThrowsAsync<StripeException>(() => new SubscriptionService(Stripe).GetAsync("sub_missing"));
        Assert.ThrowsAsync<StripeException>(() => new InvoiceService(Stripe).GetAsync("in_missing"));
    }

    [Test]
    public async Task Should_require_a_secret_key()
    {
        using var response = await Http.GetAsync("/v1/customers");
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("\"invalid_request_error\""));
    }

    [Test]
    public async Task Should_replay_the_first_answer_for_a_repeated_idempotency_key()
    {
        var customers = new CustomerService(Stripe);
        var options = new CustomerCreateOptions { Email = "same@example.test" };
        var first = await customers.CreateAsync(options, new RequestOptions { IdempotencyKey = "op-1" });
        var second = await customers.CreateAsync(options, new RequestOptions { IdempotencyKey = "op-1" });
        Assert.That(second.Id, Is.EqualTo(first.Id));
        var all = await customers.ListAsync(new CustomerListOptions { Email = "same@example.test" });
        Assert.That(all.Data, Has.Count.EqualTo(1));
        var (status, body) = await PostForm("/v1/customers", "email=other%40example.test", "op-1");
        Assert.That((int)status, Is.EqualTo(400));
        Assert.That(body["error"]!["type"]!.GetValue<string>(), Is.EqualTo("idempotency_error"));
    }

    [Test]
    public async Task Should_parse_nested_brackets_and_arrays()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var (status, body) = await PostForm("/v1/checkout/sessions",
            "mode=subscription&line_items[0][price]=" + price.Id + "&line_items[0][quantity]=2" +
            "&metadata[userId]=u42&metadata[planId]=pro&subscription_data[metadata][userId]=u42" +
            "&subscription_data[trial_period_days]=3&expand[]=line_items&success_url=https%3A%2F%2Fa.example%2Fok");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToJsonString());
        Assert.That(body["metadata"]!["userId"]!.GetValue<string>(), Is.EqualTo("u42"));
        Assert.That(body["metadata"]!["planId"]!.GetValue<string>(), Is.EqualTo("pro"));
        Assert.That(body["amount_total"]!.GetValue<long>(), Is.EqualTo(1000));
        Assert.That(body["line_items"]!["data"]![0]!["quantity"]!.GetValue<long>(), Is.EqualTo(2));

        var (bad, error) = await PostForm("/v1/prices", "currency=usd&unit_amount=abc&product_data[name]=X");
        Assert.That(bad, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(error["error"]!["param"]!.GetValue<string>(), Is.EqualTo("unit_amount"));
    }

    [Test]
    public async Task Should_find_prices_by_lookup_key_and_move_a_key_on_transfer()
    {
        var prices = new PriceService(Stripe);
        var old = await CreatePrice("pro_monthly", 500);
        var ex = Assert.ThrowsAsync<StripeException>(() => prices.CreateAsync(new PriceCreateOptions
        {
            Currency = "usd",
            UnitAmount = 600,
            Product = old.ProductId,
            LookupKey = "pro_monthly",
            Recurring = new PriceRecurringOptions { Interval = "month" },
        }));
        Assert.That(ex!.HttpStatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var replacement = await CreatePrice("pro_monthly", 600);
        var found = await prices.ListAsync(new PriceListOptions { LookupKeys = ["pro_monthly", "nope"], Active = true, Expand = ["data.product"] });
        Assert.That(found.Data.Select(p => p.Id), Is.EqualTo(new[] { replacement.Id }));
        Assert.That(found.Data[0].Product.Name, Is.EqualTo("Pro"));
        Assert.That((await prices.GetAsync(old.Id)).LookupKey, Is.Null);
        var deactivated = await prices.UpdateAsync(old.Id, new PriceUpdateOptions { Active = false, Metadata = new() { ["retired"] = "yes" } });
        Assert.That(deactivated.Active, Is.False);
        Assert.That(deactivated.Metadata["retired"], Is.EqualTo("yes"));
        var oneTime = await prices.ListAsync(new PriceListOptions { Type = "one_time" });
        Assert.That(oneTime.Data, Is.Empty);
    }

    [Test]
    public async Task Should_search_and_update_customers()
    {
        var customers = new CustomerService(Stripe);
        var mine = await CreateCustomer("u42");
        await CreateCustomer("u43");
        var found = await customers.SearchAsync(new CustomerSearchOptions { Query = "metadata['userId']:'u42'" });
        Assert.That(found.Data.Select(c => c.Id), Is.EqualTo(new[] { mine.Id }));
        var updated = await customers.UpdateAsync(mine.Id, new CustomerUpdateOptions { Email = "new@example.test", Metadata = new() { ["tier"] = "gold" } });
        Assert.That(updated.Email, Is.EqualTo("new@example.test"));
        Assert.That(updated.Metadata, Is.EquivalentTo(new Dictionary<string, string> { ["userId"] = "u42", ["tier"] = "gold" }));
        var byEmail = await customers.ListAsync(new CustomerListOptions { Email = "new@example.test" });
        Assert.That(byEmail.Data, Has.Count.EqualTo(1));
        var product = await new ProductService(Stripe).UpdateAsync((await CreatePrice("x", 1)).ProductId, new ProductUpdateOptions { Name = "Renamed" });
        Assert.That(product.Name, Is.EqualTo("Renamed"));
    }

    [Test]
    public async Task Should_count_a_meter_event_identifier_once()
    {
        var customer = await CreateCustomer();
        var meterEvents = new Stripe.Billing.MeterEventService(Stripe);
        var options = new Stripe.Billing.MeterEventCreateOptions
        {
            EventName = "ai_generation",
            Identifier = "gen-1",
            Payload = new() { ["stripe_customer_id"] = customer.Id, ["value"] = "3" },
        };
        var created = await meterEvents.CreateAsync(options);
        Assert.That(created.Identifier, Is.EqualTo("gen-1"));
        Assert.That(created.Payload["value"], Is.EqualTo("3"));
        var ex = Assert.ThrowsAsync<StripeException>(() => meterEvents.CreateAsync(options));
        Assert.That(ex!.HttpStatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(ex.StripeError.Message, Does.Contain("already exists with identifier gen-1"));
        var listed = await GetJson("/_sim/meter_events");
        Assert.That(listed["data"]!.AsArray(), Has.Count.EqualTo(1));
        Assert.That(listed["data"]![0]!["customer"]!.GetValue<string>(), Is.EqualTo(customer.Id));
    }
}
