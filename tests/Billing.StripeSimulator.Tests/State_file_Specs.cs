using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Billing.StripeSimulator.Tests;

/// <summary>
/// With <c>SIM_STATE_FILE</c> the simulator outlives a restart (<c>deploy/billing down</c> / <c>up</c>): each test starts
/// its own simulators in-process on one state file, next to the shared one the other specs use.
/// </summary>
public sealed class Keeping_state_in_a_file
{
    private const string PublicUrl = "http://sim.example"; // the same in every instance, so rendered URLs compare equal

    private static WebApplication _receiver = null!;
    private static string _receiverUrl = "";
    private static readonly ConcurrentQueue<(string Path, JsonObject Event)> Received = new();
    private static volatile bool _failDeliveries;

    private string _directory = "";
    private string _file = "";

    [OneTimeSetUp]
    public async Task StartReceiverAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _receiver = builder.Build();
        _receiver.MapPost("/hooks/{name}", async (string name, HttpRequest request) =>
        {
            using var reader = new StreamReader(request.Body, Encoding.UTF8);
            var body = await reader.ReadToEndAsync();
            if (_failDeliveries)
            {
                return Results.StatusCode(500);
            }
            Received.Enqueue((name, JsonNode.Parse(body)!.AsObject()));
            return Results.Ok();
        });
        await _receiver.StartAsync();
        _receiverUrl = _receiver.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
    }

    [OneTimeTearDown]
    public async Task StopReceiverAsync()
    {
        await _receiver.StopAsync();
        await _receiver.DisposeAsync();
    }

    [SetUp]
    public void CreateDirectory()
    {
        _directory = Path.Combine(Path.GetTempPath(), "billing-sim-state-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_directory);
        _file = Path.Combine(_directory, "simulator-state.json");
        _failDeliveries = false;
        Received.Clear();
    }

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_directory, recursive: true);

    [Test]
    public async Task Should_answer_exactly_as_before_after_a_restart_and_keep_billing()
    {
        JsonObject customer, subscription, invoices, events, simEvents, session, idempotent, config;
        long offset;
        string sessionId;
        await using (var first = await Simulator.StartAsync(_file, _receiverUrl + "/hooks/configured"))
        {
            var price = await first.Form("/v1/prices", "currency=usd&unit_amount=500&recurring[interval]=month&product_data[name]=Pro&lookup_key=pro_monthly");
            customer = await first.Form("/v1/customers", "email=u42%40example.test&metadata[userId]=u42");
            sessionId = (await first.Form("/v1/checkout/sessions",
                $"mode=subscription&customer={customer["id"]}&client_reference_id=u42&line_items[0][price]={price["id"]}&line_items[0][quantity]=1" +
                "&subscription_data[metadata][userId]=u42&success_url=https%3A%2F%2Fapp.example%2Fok"))["id"]!.GetValue<string>();
            using (var paid = await first.Pay(sessionId))
            {
                Assert.That((int)paid.StatusCode, Is.EqualTo(303));
            }
            await first.Json("/_sim/config", new JsonObject { ["webhookUrl"] = _receiverUrl + "/hooks/override" });
            await first.Json("/_sim/clock/advance", new JsonObject { ["seconds"] = 5 * 86400 });
            idempotent = await first.Form("/v1/customers", "email=again%40example.test", idempotencyKey: "create-again");
            await first.WaitUntilAllDelivered();

            (customer, subscription, invoices, events, simEvents, session, config, offset) = await Observe(first, customer["id"]!.GetValue<string>(), sessionId);
            Assert.That(offset, Is.EqualTo(5 * 86400));
            Assert.That(invoices["data"]!.AsArray(), Has.Count.EqualTo(1));
        }

        Assert.That(File.Exists(_file), "saved on shutdown");
        Assert.That(JsonNode.Parse(await File.ReadAllTextAsync(_file))!["version"]!.GetValue<int>(), Is.EqualTo(1));

        await using var second = await Simulator.StartAsync(_file, _receiverUrl + "/hooks/configured");
        var customerId = customer["id"]!.GetValue<string>();
        var restored = await Observe(second, customerId, sessionId);
        Assert.That(restored.Customer.ToJsonString(), Is.EqualTo(customer.ToJsonString()));
        Assert.That(restored.Subscription.ToJsonString(), Is.EqualTo(subscription.ToJsonString()));
        Assert.That(restored.Invoices.ToJsonString(), Is.EqualTo(invoices.ToJsonString()));
        Assert.That(restored.Events.ToJsonString(), Is.EqualTo(events.ToJsonString()));
        Assert.That(restored.SimEvents.ToJsonString(), Is.EqualTo(simEvents.ToJsonString()), "events with their delivery attempts");
        Assert.That(restored.Session.ToJsonString(), Is.EqualTo(session.ToJsonString()));
        Assert.That(restored.Config.ToJsonString(), Is.EqualTo(config.ToJsonString()), "the /_sim/config override outlives the restart");
        Assert.That(restored.Offset, Is.EqualTo(offset));

        using (var replay = await second.Send(HttpMethod.Post, "/v1/customers", "email=again%40example.test", "create-again"))
        {
            Assert.That(await replay.Content.ReadAsStringAsync(), Is.EqualTo(idempotent.ToJsonString()));
            Assert.That(replay.Headers.GetValues("Idempotent-Replayed").Single(), Is.EqualTo("true"));
        }
        using (var misuse = await second.Send(HttpMethod.Post, "/v1/customers", "email=other%40example.test", "create-again"))
        {
            Assert.That((int)misuse.StatusCode, Is.EqualTo(400));
        }

        var periodEnd = subscription["items"]!["data"]![0]!["current_period_end"]!.GetValue<long>();
        var now = (await second.Get("/_sim/clock"))["now"]!.GetValue<long>();
        await second.Json("/_sim/clock/advance", new JsonObject { ["seconds"] = periodEnd - now + 10 });
        var renewed = await second.Get($"/v1/subscriptions/{subscription["id"]}");
        Assert.That(renewed["status"]!.GetValue<string>(), Is.EqualTo("active"));
        Assert.That(renewed["items"]!["data"]![0]!["current_period_start"]!.GetValue<long>(), Is.EqualTo(periodEnd));
        var cycle = (await second.Get($"/v1/invoices?customer={customerId}"))["data"]!.AsArray()[0]!;
        Assert.That(cycle["billing_reason"]!.GetValue<string>(), Is.EqualTo("subscription_cycle"));
        Assert.That(cycle["status"]!.GetValue<string>(), Is.EqualTo("paid"));
        Assert.That(cycle["number"]!.GetValue<string>(), Is.EqualTo("SIM-0002"), "invoice numbers continue");
        await WaitFor(() => Received.Any(r => r.Path == "override" && r.Event["type"]!.GetValue<string>() == "invoice.paid"
            && r.Event["data"]!["object"]!["id"]!.GetValue<string>() == cycle["id"]!.GetValue<string>()));
    }

    [Test]
    public async Task Should_keep_subscription_schedules_across_a_restart()
    {
        JsonObject schedule, subscription;
        string customerId;
        await using (var first = await Simulator.StartAsync(_file, ""))
        {
            var yearly = (await first.Form("/v1/prices", "currency=usd&unit_amount=12000&recurring[interval]=year&product_data[name]=Pro"))["id"]!.GetValue<string>();
            var monthly = (await first.Form("/v1/prices", "currency=usd&unit_amount=500&recurring[interval]=month&product_data[name]=Basic"))["id"]!.GetValue<string>();
            customerId = (await first.Form("/v1/customers", "email=u42%40example.test"))["id"]!.GetValue<string>();
            var sessionId = (await first.Form("/v1/checkout/sessions",
                $"mode=subscription&customer={customerId}&line_items[0][price]={yearly}&line_items[0][quantity]=1&success_url=https%3A%2F%2Fapp.example%2Fok"))["id"]!.GetValue<string>();
            using (var paid = await first.Pay(sessionId))
            {
                Assert.That((int)paid.StatusCode, Is.EqualTo(303));
            }
            var subId = (await first.Get($"/v1/checkout/sessions/{sessionId}"))["subscription"]!.GetValue<string>();
            var created = await first.Form("/v1/subscription_schedules", $"from_subscription={subId}");
            var phase = created["phases"]![0]!;
            await first.Form($"/v1/subscription_schedules/{created["id"]}",
                $"end_behavior=release&proration_behavior=none&phases[0][items][0][price]={yearly}&phases[0][start_date]={phase["start_date"]}&phases[0][end_date]={phase["end_date"]}" +
                $"&phases[1][items][0][price]={monthly}&phases[1][metadata][planId]=basic");
            schedule = await first.Get($"/v1/subscription_schedules/{created["id"]}");
            subscription = await first.Get($"/v1/subscriptions/{subId}");
        }
        Assert.That(JsonNode.Parse(await File.ReadAllTextAsync(_file))!["subscriptionSchedules"]!.AsArray(), Has.Count.EqualTo(1));

        await using var second = await Simulator.StartAsync(_file, "");
        var scheduleId = schedule["id"]!.GetValue<string>();
        Assert.That((await second.Get($"/v1/subscription_schedules/{scheduleId}")).ToJsonString(), Is.EqualTo(schedule.ToJsonString()));
        Assert.That((await second.Get($"/v1/subscriptions/{subscription["id"]}")).ToJsonString(), Is.EqualTo(subscription.ToJsonString()));
        Assert.That((await second.Get($"/v1/subscription_schedules?customer={customerId}"))["data"]![0]!["id"]!.GetValue<string>(), Is.EqualTo(scheduleId));

        var periodEnd = schedule["phases"]![0]!["end_date"]!.GetValue<long>();
        var now = (await second.Get("/_sim/clock"))["now"]!.GetValue<long>();
        await second.Json("/_sim/clock/advance", new JsonObject { ["seconds"] = periodEnd - now + 10 });
        var switched = await second.Get($"/v1/subscriptions/{subscription["id"]}");
        Assert.That(switched["items"]!["data"]![0]!["price"]!["id"]!.GetValue<string>(), Is.EqualTo(schedule["phases"]![1]!["items"]![0]!["price"]!.GetValue<string>()));
        Assert.That(switched["metadata"]!["planId"]!.GetValue<string>(), Is.EqualTo("basic"));
        Assert.That((await second.Get($"/v1/subscription_schedules/{scheduleId}"))["current_phase"]!["start_date"]!.GetValue<long>(), Is.EqualTo(periodEnd));
    }

    [Test]
    public async Task Should_keep_meters_and_metered_usage_across_a_restart()
    {
        JsonObject meter, overage, subscription;
        await using (var first = await Simulator.StartAsync(_file, ""))
        {
            meter = await first.Form("/v1/billing/meters", "display_name=AI%20tokens&event_name=ai_tokens&default_aggregation[formula]=sum");
            var plan = (await first.Form("/v1/prices", "currency=usd&unit_amount=500&recurring[interval]=month&product_data[name]=Pro"))["id"]!.GetValue<string>();
            overage = await first.Form("/v1/prices",
                $"currency=usd&unit_amount_decimal=0.5&recurring[interval]=month&recurring[usage_type]=metered&recurring[meter]={meter["id"]}&product_data[name]=AI%20overage");
            var customerId = (await first.Form("/v1/customers", "email=u42%40example.test"))["id"]!.GetValue<string>();
            var sessionId = (await first.Form("/v1/checkout/sessions",
                $"mode=subscription&customer={customerId}&line_items[0][price]={plan}&line_items[0][quantity]=1&line_items[1][price]={overage["id"]}" +
                "&success_url=https%3A%2F%2Fapp.example%2Fok"))["id"]!.GetValue<string>();
            using (var paid = await first.Pay(sessionId))
            {
                Assert.That((int)paid.StatusCode, Is.EqualTo(303));
            }
            var subId = (await first.Get($"/v1/checkout/sessions/{sessionId}"))["subscription"]!.GetValue<string>();
            var now = (await first.Get("/_sim/clock"))["now"]!.GetValue<long>();
            await first.Form("/v1/billing/meter_events", $"event_name=ai_tokens&payload[stripe_customer_id]={customerId}&payload[value]=5&timestamp={now}");
            subscription = await first.Get($"/v1/subscriptions/{subId}");
        }
        Assert.That(JsonNode.Parse(await File.ReadAllTextAsync(_file))!["meters"]!.AsArray(), Has.Count.EqualTo(1));

        await using var second = await Simulator.StartAsync(_file, "");
        Assert.That((await second.Get($"/v1/billing/meters/{meter["id"]}")).ToJsonString(), Is.EqualTo(meter.ToJsonString()));
        Assert.That((await second.Get($"/v1/prices/{overage["id"]}")).ToJsonString(), Is.EqualTo(overage.ToJsonString()));
        Assert.That((await second.Get($"/v1/subscriptions/{subscription["id"]}")).ToJsonString(), Is.EqualTo(subscription.ToJsonString()));

        var periodEnd = subscription["items"]!["data"]![0]!["current_period_end"]!.GetValue<long>();
        var clock = (await second.Get("/_sim/clock"))["now"]!.GetValue<long>();
        await second.Json("/_sim/clock/advance", new JsonObject { ["seconds"] = periodEnd - clock + 10 });
        var renewal = await second.Get($"/v1/invoices/{(await second.Get($"/v1/subscriptions/{subscription["id"]}"))["latest_invoice"]}");
        var usage = renewal["lines"]!["data"]!.AsArray().Single(l => l!["pricing"]!["price_details"]!["price"]!.GetValue<string>() == overage["id"]!.GetValue<string>())!;
        Assert.That(usage["quantity"]!.GetValue<long>(), Is.EqualTo(5));
        Assert.That(usage["amount"]!.GetValue<long>(), Is.EqualTo(3));
    }

    [Test]
    public async Task Should_keep_disputes_across_a_restart()
    {
        JsonObject open, closed, charge;
        await using (var first = await Simulator.StartAsync(_file, ""))
        {
            var price = (await first.Form("/v1/prices", "currency=usd&unit_amount=500&product_data[name]=Starter%20pack"))["id"]!.GetValue<string>();
            var charges = new List<string>();
            for (var i = 0; i < 2; i++)
            {
                var sessionId = (await first.Form("/v1/checkout/sessions",
                    $"mode=payment&line_items[0][price]={price}&line_items[0][quantity]=1&success_url=https%3A%2F%2Fapp.example%2Fok"))["id"]!.GetValue<string>();
                using (var paid = await first.Pay(sessionId))
                {
                    Assert.That((int)paid.StatusCode, Is.EqualTo(303));
                }
                var intent = await first.Get($"/v1/payment_intents/{(await first.Get($"/v1/checkout/sessions/{sessionId}"))["payment_intent"]}");
                charges.Add(intent["latest_charge"]!.GetValue<string>());
            }
            open = await first.Json($"/_sim/charges/{charges[0]}/dispute", new JsonObject { ["reason"] = "product_not_received", ["amount"] = 300 });
            var other = await first.Json($"/_sim/charges/{charges[1]}/dispute", new JsonObject());
            closed = await first.Json($"/_sim/disputes/{other["id"]}/close", new JsonObject { ["status"] = "lost" });
            charge = await first.Get($"/v1/charges/{charges[0]}");
        }
        Assert.That(JsonNode.Parse(await File.ReadAllTextAsync(_file))!["disputes"]!.AsArray(), Has.Count.EqualTo(2));

        await using var second = await Simulator.StartAsync(_file, "");
        Assert.That((await second.Get($"/v1/disputes/{open["id"]}")).ToJsonString(), Is.EqualTo(open.ToJsonString()));
        Assert.That((await second.Get($"/v1/disputes/{closed["id"]}")).ToJsonString(), Is.EqualTo(closed.ToJsonString()));
        Assert.That((await second.Get($"/v1/charges/{charge["id"]}")).ToJsonString(), Is.EqualTo(charge.ToJsonString()));
        Assert.That(charge["disputed"]!.GetValue<bool>(), Is.True);
        var listed = (await second.Get("/v1/disputes"))["data"]!.AsArray().Select(d => d!["id"]!.GetValue<string>());
        Assert.That(listed, Is.EqualTo(new[] { closed["id"]!.GetValue<string>(), open["id"]!.GetValue<string>() }), "newest first, as before");
        using var again = await second.Send(HttpMethod.Post, $"/_sim/charges/{charge["id"]}/dispute", "");
        Assert.That((int)again.StatusCode, Is.EqualTo(400), "still disputed after the restart");
    }

    [Test]
    public async Task Should_load_a_file_written_before_meters_and_metered_items_existed()
    {
        JsonObject subscription, invoice;
        await using (var first = await Simulator.StartAsync(_file, ""))
        {
            var price = (await first.Form("/v1/prices", "currency=usd&unit_amount=500&recurring[interval]=month&product_data[name]=Pro"))["id"]!.GetValue<string>();
            var customerId = (await first.Form("/v1/customers", "email=u42%40example.test"))["id"]!.GetValue<string>();
            var sessionId = (await first.Form("/v1/checkout/sessions",
                $"mode=subscription&customer={customerId}&line_items[0][price]={price}&line_items[0][quantity]=1&success_url=https%3A%2F%2Fapp.example%2Fok"))["id"]!.GetValue<string>();
            using (var paid = await first.Pay(sessionId))
            {
                Assert.That((int)paid.StatusCode, Is.EqualTo(303));
            }
            subscription = await first.Get($"/v1/subscriptions/{(await first.Get($"/v1/checkout/sessions/{sessionId}"))["subscription"]}");
            invoice = await first.Get($"/v1/invoices/{subscription["latest_invoice"]}");
        }
        // What an older simulator wrote: none of the properties meters brought.
        var saved = JsonNode.Parse(await File.ReadAllTextAsync(_file))!.AsObject();
        saved.Remove("meters");
        string[] added = ["usageType", "meterId", "unitAmountDecimal", "metered", "usageStart", "quantityDecimal"];
        void Strip(JsonNode? node)
        {
            if (node is JsonObject obj)
            {
                foreach (var key in added)
                {
                    obj.Remove(key);
                }
                foreach (var (_, child) in obj.ToList())
                {
                    Strip(child);
                }
            }
            else if (node is JsonArray array)
            {
                foreach (var child in array)
                {
                    Strip(child);
                }
            }
        }
        Strip(saved);
        await File.WriteAllTextAsync(_file, saved.ToJsonString());

        await using var second = await Simulator.StartAsync(_file, "");
        Assert.That(Directory.GetFiles(_directory, "*.broken-*"), Is.Empty);
        Assert.That((await second.Get($"/v1/subscriptions/{subscription["id"]}")).ToJsonString(), Is.EqualTo(subscription.ToJsonString()));
        Assert.That((await second.Get($"/v1/invoices/{invoice["id"]}")).ToJsonString(), Is.EqualTo(invoice.ToJsonString()));
    }

    [Test]
    public async Task Should_resume_pending_webhook_deliveries_after_a_restart()
    {
        _failDeliveries = true;
        string customerId;
        await using (var first = await Simulator.StartAsync(_file, _receiverUrl + "/hooks/configured"))
        {
            customerId = (await first.Form("/v1/customers", "email=u42%40example.test"))["id"]!.GetValue<string>();
            await WaitFor(async () => (await first.SimEvent("customer.created"))["attempts"]!.AsArray().Count > 0);
        }
        _failDeliveries = false;

        await using var second = await Simulator.StartAsync(_file, _receiverUrl + "/hooks/configured");
        await WaitFor(() => Received.Any(r => r.Event["type"]!.GetValue<string>() == "customer.created"));
        var delivered = Received.Single(r => r.Event["type"]!.GetValue<string>() == "customer.created").Event;
        Assert.That(delivered["data"]!["object"]!["id"]!.GetValue<string>(), Is.EqualTo(customerId));
        await WaitFor(async () => (await second.SimEvent("customer.created"))["delivered"]!.GetValue<bool>());
        var attempts = (await second.SimEvent("customer.created"))["attempts"]!.AsArray();
        Assert.That(attempts[0]!["status"]!.GetValue<int>(), Is.EqualTo(500), "the attempt before the restart is kept");
        Assert.That(attempts[^1]!["status"]!.GetValue<int>(), Is.EqualTo(200));
    }

    [Test]
    public async Task Should_save_soon_after_a_change_while_running()
    {
        await using var simulator = await Simulator.StartAsync(_file, _receiverUrl + "/hooks/configured");
        var id = (await simulator.Form("/v1/customers", "email=u42%40example.test"))["id"]!.GetValue<string>();
        await WaitFor(() => File.Exists(_file) && File.ReadAllText(_file).Contains(id, StringComparison.Ordinal), timeoutMs: 3_000);
        Assert.That(Directory.GetFiles(_directory), Has.Length.EqualTo(1), "no temporary file left behind");
    }

    [Test]
    public async Task Should_clear_the_file_on_reset()
    {
        await using (var first = await Simulator.StartAsync(_file, _receiverUrl + "/hooks/configured"))
        {
            var id = (await first.Form("/v1/customers", "email=u42%40example.test"))["id"]!.GetValue<string>();
            await first.Json("/_sim/clock/advance", new JsonObject { ["seconds"] = 3600 });
            await first.Json("/_sim/reset", new JsonObject());
            Assert.That(await File.ReadAllTextAsync(_file), Does.Not.Contain(id), "cleared as soon as reset answers");
        }
        await using var second = await Simulator.StartAsync(_file, _receiverUrl + "/hooks/configured");
        Assert.That((await second.Get("/v1/customers"))["data"]!.AsArray(), Is.Empty);
        Assert.That((await second.Get("/v1/events"))["data"]!.AsArray(), Is.Empty);
        Assert.That((await second.Get("/_sim/clock"))["offset"]!.GetValue<long>(), Is.Zero);
    }

    [TestCase("{\"version\":1,\"counters\":", TestName = "Should_start_empty_and_move_aside_a_corrupt_file")]
    [TestCase("{\"version\":99,\"customers\":{\"x\":1}}", TestName = "Should_start_empty_and_move_aside_a_file_of_another_version")]
    [TestCase("", TestName = "Should_start_empty_and_move_aside_an_empty_file")]
    public async Task Should_start_empty_and_move_aside_an_unreadable_file(string content)
    {
        await File.WriteAllTextAsync(_file, content);
        await using (var simulator = await Simulator.StartAsync(_file, _receiverUrl + "/hooks/configured"))
        {
            Assert.That((await simulator.Get("/v1/customers"))["data"]!.AsArray(), Is.Empty);
            var aside = Directory.GetFiles(_directory, "simulator-state.json.broken-*");
            Assert.That(aside, Has.Length.EqualTo(1));
            Assert.That(await File.ReadAllTextAsync(aside[0]), Is.EqualTo(content), "kept for a look");
            Assert.That(File.Exists(_file), Is.False);
            await simulator.Form("/v1/customers", "email=u42%40example.test");
        }
        Assert.That(JsonNode.Parse(await File.ReadAllTextAsync(_file))!["customers"]!.AsArray(), Has.Count.EqualTo(1), "a good file again");
    }

    private static async Task<(JsonObject Customer, JsonObject Subscription, JsonObject Invoices, JsonObject Events, JsonObject SimEvents, JsonObject Session, JsonObject Config, long Offset)> Observe(
        Simulator sim, string customerId, string sessionId)
    {
        var session = await sim.Get($"/v1/checkout/sessions/{sessionId}");
        var config = await sim.Get("/_sim/config");
        config.Remove("now");
        return (
            await sim.Get($"/v1/customers/{customerId}"),
            await sim.Get($"/v1/subscriptions/{session["subscription"]}"),
            await sim.Get($"/v1/invoices?customer={customerId}&limit=100"),
            await sim.Get("/v1/events?limit=100"),
            await sim.Get("/_sim/events"),
            session,
            config,
            (await sim.Get("/_sim/clock"))["offset"]!.GetValue<long>());
    }

    private static Task WaitFor(Func<bool> condition, int timeoutMs = 10_000) => WaitFor(() => Task.FromResult(condition()), timeoutMs);

    private static async Task WaitFor(Func<Task<bool>> condition, int timeoutMs = 10_000)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail("Timed out waiting");
            }
            await Task.Delay(25);
        }
    }

    /// <summary>One simulator on a loopback port, with the given state file; disposing stops it like Ctrl+C would.</summary>
    private sealed class Simulator : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly HttpClient _http;

        private Simulator(WebApplication app, string url)
        {
            _app = app;
            _http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(url) };
            _http.DefaultRequestHeaders.Authorization = new("Bearer", "sk_test_simulator");
        }

        public static async Task<Simulator> StartAsync(string stateFile, string webhookUrl)
        {
            var app = SimulatorApp.Build(["--urls", "http://127.0.0.1:0"], o =>
            {
                o.PublicUrl = PublicUrl;
                o.WebhookUrl = webhookUrl;
                o.WebhookSecret = SimulatorHost.Secret;
                o.StateFile = stateFile;
            });
            await app.StartAsync();
            var url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
            return new Simulator(app, url);
        }

        public async Task<HttpResponseMessage> Send(HttpMethod method, string path, string? form = null, string? idempotencyKey = null)
        {
            using var request = new HttpRequestMessage(method, path);
            if (form is not null)
            {
                request.Content = new StringContent(form, Encoding.UTF8, "application/x-www-form-urlencoded");
            }
            if (idempotencyKey is not null)
            {
                request.Headers.Add("Idempotency-Key", idempotencyKey);
            }
            return await _http.SendAsync(request);
        }

        public async Task<JsonObject> Form(string path, string form, string? idempotencyKey = null)
        {
            using var response = await Send(HttpMethod.Post, path, form, idempotencyKey);
            return await Read(response, path);
        }

        public async Task<JsonObject> Get(string path)
        {
            using var response = await Send(HttpMethod.Get, path);
            return await Read(response, path);
        }

        public async Task<JsonObject> Json(string path, JsonObject body)
        {
            using var response = await _http.PostAsync(path, new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
            return await Read(response, path);
        }

        public Task<HttpResponseMessage> Pay(string sessionId) =>
            _http.PostAsync($"/checkout/{sessionId}/pay", new FormUrlEncodedContent(new Dictionary<string, string> { ["card"] = "4242424242424242" }));

        public async Task<JsonObject> SimEvent(string type) =>
            (await Get("/_sim/events"))["data"]!.AsArray().Single(e => e!["type"]!.GetValue<string>() == type)!.AsObject();

        public Task WaitUntilAllDelivered() =>
            WaitFor(async () => (await Get("/_sim/events"))["data"]!.AsArray().All(e => e!["delivered"]!.GetValue<bool>()));

        public async ValueTask DisposeAsync()
        {
            _http.Dispose();
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        private static async Task<JsonObject> Read(HttpResponseMessage response, string path)
        {
            var text = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), $"{path}: {text}");
            return JsonNode.Parse(text)!.AsObject();
        }
    }
}
