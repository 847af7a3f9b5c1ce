using System.Diagnostics;

namespace Billing.Client;

/// <summary>
/// The client's spans. Add <see cref="ActivitySourceName"/> to OpenTelemetry (<c>tracing.AddSource(BillingClientTelemetry.ActivitySourceName)</c>);
/// the W3C <c>traceparent</c> reaches Billing through HttpClient, so one trace runs from the AI call into Billing.
/// </summary>
public static class BillingClientTelemetry
{
    /// <summary>The <see cref="ActivitySource"/> name: <c>Billing.Client</c>.</summary>
    public const string ActivitySourceName = "Billing.Client";

    internal static readonly ActivitySource Source = new(ActivitySourceName, typeof(BillingClientTelemetry).Assembly.GetName().Version?.ToString());
}
