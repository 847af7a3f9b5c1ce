using System.Text.Json;
using System.Text.Json.Nodes;

namespace Billing.StripeSimulator.Tests;

/// <summary>
/// Every object the simulator returns has the JSON shape of Stripe's own example of that type (fixtures3.json):
/// every field both have is of the same JSON kind, at every depth (null matches anything).
/// </summary>
public sealed class Matching_Stripe_fixture_shapes : SimulatorSpec
{
    private static JsonObject? _fixtures;

    private static JsonObject Fixtures => _fixtures ??= LoadFixtures();

    private static JsonObject LoadFixtures()
    {
        var local = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures3.json");
        var path = File.Exists(local) ? local : FindUp(Path.Combine("shared", "fixtures", "stripe", "fixtures3.json"));
        return JsonNode.Parse(File.ReadAllText(path))!["resources"]!.AsObject();
    }

    private static string FindUp(string relative)
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, relative);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        Assert.Ignore("shared/fixtures/stripe/fixtures3.json not found");
        return "";
    }

    [TestCase("customer")]
    [TestCase("product")]
    [TestCase("price")]
    [TestCase("checkout.session")]
    [TestCase("item")]
    [TestCase("billing_portal.session")]
    [TestCase("subscription")]
    [TestCase("subscription_item")]
    [TestCase("subscription_schedule")]
    [TestCase("invoice")]
    [TestCase("line_item")]
    [TestCase("invoice_payment")]
    [TestCase("payment_intent")]
    [TestCase("charge")]
    [TestCase("refund")]
    [TestCase("dispute")]
    [TestCase("billing.meter_event")]
    [TestCase("billing.meter")]
    [TestCase("event")]
    public async Task Should_match_the_fixture_of(string type)
    {
        var objects = await BuildEveryObjectType();
        var ours = objects[type];
        Assert.That(ours["object"]?.GetValue<string>(), Is.EqualTo(type));
        var fixture = Fixtures[type]!.AsObject();
        var mismatches = new List<string>();
        Compare(type, fixture, ours, mismatches);
        Assert.That(mismatches, Is.Empty);
        var shared = fixture.Select(p => p.Key).Count(ours.ContainsKey);
        Assert.That(shared, Is.GreaterThanOrEqualTo(Math.Min(fixture.Count, 8)), "the object carries the fields Stripe's does");
    }

    private static void Compare(string path, JsonNode? expected, JsonNode? actual, List<string> mismatches)
    {
        if (expected is null || actual is null)
        {
            return;
        }
        var expectedKind = expected.GetValueKind();
        var actualKind = actual.GetValueKind();
        if (Kind(expectedKind) != Kind(actualKind))
        {
            mismatches.Add($"{path}: fixture {expectedKind}, simulator {actualKind}");
            return;
        }
        if (expected is JsonObject e && actual is JsonObject a)
        {
            foreach (var (key, value) in e)
            {
                if (a.TryGetPropertyValue(key, out var other))
                {
                    Compare($"{path}.{key}", value, other, mismatches);
                }
            }
        }
        else if (expected is JsonArray ea && actual is JsonArray aa && ea.Count > 0 && aa.Count > 0)
        {
            Compare($"{path}[0]", ea[0], aa[0], mismatches);
        }
    }

    private static string Kind(JsonValueKind kind) => kind switch
    {
        JsonValueKind.True or JsonValueKind.False => "bool",
        _ => kind.ToString(),
    };

    private static async Task<Dictionary<string, JsonObject>> BuildEveryObjectType()
    {
        var price = await CreatePrice("pro_monthly", 500);
        var sub = await SubscribeAndPay(price);
        var objects = new Dictionary<string, JsonObject>();
        var subscription = await GetJson($"/v1/subscriptions/{sub.Id}");
        objects["subscription"] = subscription;
        objects["subscription_item"] = subscription["items"]!["data"]![0]!.AsObject();
        objects["customer"] = await GetJson($"/v1/customers/{sub.CustomerId}");
        objects["price"] = await GetJson($"/v1/prices/{price.Id}");
        objects["product"] = await GetJson($"/v1/products/{price.ProductId}");
        var invoice = await GetJson($"/v1/invoices/{sub.LatestInvoiceId}");
        objects["invoice"] = invoice;
        objects["line_item"] = invoice["lines"]!["data"]![0]!.AsObject();
        var payment = (await GetJson($"/v1/invoice_payments?invoice={sub.LatestInvoiceId}"))["data"]![0]!.AsObject();
        objects["invoice_payment"] = payment;
        var intent = await GetJson($"/v1/payment_intents/{payment["payment"]!["payment_intent"]!.GetValue<string>()}");
        objects["payment_intent"] = intent;
        var (_, refund) = await PostForm("/v1/refunds", $"payment_intent={intent["id"]!.GetValue<string>()}&amount=100");
        objects["refund"] = refund;
        objects["dispute"] = await PostJson($"/_sim/charges/{intent["latest_charge"]!.GetValue<string>()}/dispute", new JsonObject());
        objects["charge"] = await GetJson($"/v1/charges/{intent["latest_charge"]!.GetValue<string>()}");
        var sessions = await GetJson($"/v1/checkout/sessions?subscription={sub.Id}");
        var session = sessions["data"]![0]!.AsObject();
        objects["checkout.session"] = session;
        objects["item"] = (await GetJson($"/v1/checkout/sessions/{session["id"]!.GetValue<string>()}/line_items"))["data"]![0]!.AsObject();
        var (_, portal) = await PostForm("/v1/billing_portal/sessions", $"customer={sub.CustomerId}&return_url=https%3A%2F%2Fa.example");
        objects["billing_portal.session"] = portal;
        var (_, meterEvent) = await PostForm("/v1/billing/meter_events", $"event_name=ai&payload[stripe_customer_id]={sub.CustomerId}&payload[value]=1");
        objects["billing.meter_event"] = meterEvent;
        var (_, meter) = await PostForm("/v1/billing/meters", "display_name=AI&event_name=ai&default_aggregation[formula]=sum");
        objects["billing.meter"] = meter;
        var (_, schedule) = await PostForm("/v1/subscription_schedules", $"from_subscription={sub.Id}");
        // The fixture shows each phase item's plan expanded.
        objects["subscription_schedule"] = await GetJson($"/v1/subscription_schedules/{schedule["id"]!.GetValue<string>()}?expand[]=phases.items.plan");
        objects["event"] = (await GetJson("/v1/events?limit=1"))["data"]![0]!.AsObject();
        return objects;
    }
}
