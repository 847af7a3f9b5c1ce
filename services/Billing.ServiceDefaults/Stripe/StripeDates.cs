namespace Billing.ServiceDefaults.Stripe;

/// <summary>Stripe.net's timestamps are <see cref="DateTime"/>s in UTC; Billing keeps <see cref="DateTimeOffset"/>s.</summary>
public static class StripeDates
{
    public static DateTimeOffset Utc(DateTime value) => new(DateTime.SpecifyKind(value, DateTimeKind.Utc));
}
