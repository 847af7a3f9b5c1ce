namespace Billing.Payments.Tests;

/// <summary>
/// A fixture with a fake Stripe of its own (WireMock) and the real Payments API, on PostgreSQL and RabbitMQ, pointed at it;
/// both started once for the fixture.
/// </summary>
public abstract class WithFakeStripe
{
    protected FakeStripe FakeStripe { get; private set; } = null!;

    protected PaymentsHost Payments { get; private set; } = null!;

    [OneTimeSetUp]
    public void StartStripeAndPayments()
    {
        FakeStripe = new FakeStripe();
        Payments = new PaymentsHost(FakeStripe.Url);
    }

    [OneTimeTearDown]
    public async Task StopStripeAndPaymentsAsync()
    {
        await Payments.DisposeAsync();
        FakeStripe.Dispose();
    }
}
