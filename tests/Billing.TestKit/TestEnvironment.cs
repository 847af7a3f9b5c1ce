namespace Billing.TestKit;

/// <summary>
/// What <c>deploy/billing test</c> hands the test projects: the private PostgreSQL and RabbitMQ of the test
/// profile, the run id that keeps databases and queues apart, and the URLs of the running stack.
/// </summary>
public static class TestEnvironment
{
    public static string RunId => Get("BILLING_TEST_RUN_ID", "local" + Environment.ProcessId);

    /// <summary>Npgsql connection string without a database.</summary>
    public static string PostgresBase => Get("BILLING_TEST_PG", "Host=127.0.0.1;Port=54330;Username=postgres;Timeout=5");

    public static string RabbitHost => Get("BILLING_TEST_RABBIT_HOST", "127.0.0.1");
    public static ushort RabbitPort => ushort.Parse(Get("BILLING_TEST_RABBIT_PORT", "56730"), System.Globalization.CultureInfo.InvariantCulture);

    public static Uri GatewayUrl => new(Get("BILLING_GATEWAY_URL", "http://127.0.0.1:18080"));
    public static Uri SimulatorUrl => new(Get("BILLING_TEST_SIM_URL", "http://127.0.0.1:22111"));
    public static Uri ServiceUrl(string service) => new(Get($"BILLING_TEST_{service.ToUpperInvariant()}_URL", "http://127.0.0.1:0"));

    public static string JwtSigningKey => Get("BILLING_JWT_SIGNING_KEY", "test-signing-key-that-is-long-enough-0123456789");
    public static string WebhookSecret => Get("STRIPE_WEBHOOK_SECRET", "whsec_billing_local_dev_secret");

    /// <summary>The repository root (for scripts such as <c>deploy/lib/rabbitctl.sh</c>).</summary>
    public static string Repo => Get("BILLING_REPO", FindRepo());

    /// <summary>A database name unique to this run and purpose.</summary>
    public static string DatabaseName(string purpose) => $"t_{RunId}_{purpose}".ToLowerInvariant();

    public static string Database(string purpose) => $"{PostgresBase};Database={DatabaseName(purpose)}";

    private static string Get(string name, string fallback) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : fallback;

    private static string FindRepo()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Billing.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("Cannot find the repository root (Billing.sln).");
    }
}
