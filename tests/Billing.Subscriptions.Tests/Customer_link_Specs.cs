using Billing.Subscriptions.Api.Persistence;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Billing.Subscriptions.Tests;

/// <summary>The user → Stripe customer link on the real PostgreSQL: the first one stored wins, whatever the timing.</summary>
[TestFixture]
public class Saving_a_customer_link
{
    private WebApplicationFactory<Program> _factory = null!;
    private string _database = "";

    [OneTimeSetUp]
    public void Start()
    {
        _database = TestEnvironment.Database("subs_customers");
        _factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseSetting("ConnectionStrings:Database", _database);
            b.UseSetting("RabbitMq:Host", TestEnvironment.RabbitHost);
            b.UseSetting("RabbitMq:Port", TestEnvironment.RabbitPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
            b.UseSetting("RabbitMq:QueuePrefix", TestEnvironment.RunId + "-customers-");
            b.UseSetting("BILLING_JWT_SIGNING_KEY", TestEnvironment.JwtSigningKey);
            b.UseSetting("BILLING_CATALOG", Path.Combine(TestEnvironment.Repo, "deploy", "catalogs", "default.json"));
            b.UseSetting("STRIPE_SECRET_KEY", "sk_test_unused");
            b.UseSetting("STRIPE_API_BASE", "http://127.0.0.1:9");
        });
        _factory.CreateClient().Dispose(); // starts the app: migrations applied
    }

    [OneTimeTearDown]
    public void Stop() => _factory.Dispose();

    [Test]
    public async Task A_link_committed_while_the_save_waited_is_returned_not_a_500()
    {
        // Another first checkout holds the row uncommitted; this save's statement starts (its snapshot cannot see the row),
        // waits on it, then finds a conflict. It must answer the committed link.
        var store = _factory.Services.GetRequiredService<SubscriptionStore>();
        var user = "u-link-" + Guid.NewGuid().ToString("N")[..8];
        await using var other = new NpgsqlConnection(_database);
        await other.OpenAsync();
        await using var tx = await other.BeginTransactionAsync();
        await using (var insert = new NpgsqlCommand("INSERT INTO customers (user_id, stripe_customer_id, email) VALUES (@u, 'cus_first_' || @u, NULL)", other, tx))
        {
            insert.Parameters.AddWithValue("u", user);
            await insert.ExecuteNonQueryAsync();
        }

        var saving = store.SaveCustomerAsync(user, "cus_second_" + user, null, CancellationToken.None);
        await Task.Delay(300);
        Assert.That(saving.IsCompleted, Is.False, "the save waits for the other transaction");
        await tx.CommitAsync();

        Assert.That(await saving, Is.EqualTo("cus_first_" + user));
    }

    [Test]
    public async Task Many_concurrent_saves_agree_on_one_customer()
    {
        var store = _factory.Services.GetRequiredService<SubscriptionStore>();
        var user = "u-link-" + Guid.NewGuid().ToString("N")[..8];

        var stored = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => store.SaveCustomerAsync(user, $"cus_{user}_{i}", null, CancellationToken.None)));

        Assert.That(stored.Distinct().Count(), Is.EqualTo(1));
    }

    [Test]
    public async Task Concurrent_saves_of_the_same_customer_never_fail_on_the_customer_id_index()
    {
        // Concurrent first checkouts get the same customer from Stripe (one idempotency key per user); their rows can
        // collide on the unique customer-id index, which ON CONFLICT (user_id) does not arbitrate (seen in CI as a 500).
        var store = _factory.Services.GetRequiredService<SubscriptionStore>();
        for (var round = 0; round < 30; round++)
        {
            var user = "u-link-" + Guid.NewGuid().ToString("N")[..8];
            var customer = "cus_" + user;
            var stored = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => store.SaveCustomerAsync(user, customer, null, CancellationToken.None))));
            Assert.That(stored, Is.All.EqualTo(customer));
        }
    }
}
