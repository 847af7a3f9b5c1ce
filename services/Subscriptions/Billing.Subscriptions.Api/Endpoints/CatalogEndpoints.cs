using Billing.Catalog;

namespace Billing.Subscriptions.Api.Endpoints;

/// <summary><c>GET /api/plans</c>: the catalog's plans, anonymous (API.md "Catalog").</summary>
public static class CatalogEndpoints
{
    public static IEndpointRouteBuilder MapCatalogApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/plans", (BillingCatalog catalog) => TypedResults.Ok(new PlansResponse(catalog.Plans.Select(ToDto).ToList())))
            .AllowAnonymous()
            .WithName("ListPlans")
            .WithSummary("The plans of the catalog with their prices, meters, features and limits (archived ones are no longer sold).");
        return app;
    }

    private static PlanDto ToDto(Plan plan) => new(
        plan.Id, plan.Name, plan.Description, plan.TrialDays,
        plan.Prices.Select(p => new PriceDto(p.Interval, p.IntervalCount, p.Amount, p.Currency)).ToList(),
        plan.Meters.Select(m => new MeterDto(m.Meter, m.Limit, m.Window, m.Overage,
            m.Overage == "tokens" ? m.TokensPerUnit : null, m.Overage == "bill" ? m.OverageUnitAmount : null)).ToList(),
        plan.Features, plan.Limits, plan.Archived);

    public sealed record PlansResponse(IReadOnlyList<PlanDto> Plans);

    public sealed record PlanDto(string Id, string Name, string Description, int TrialDays, IReadOnlyList<PriceDto> Prices,
        IReadOnlyList<MeterDto> Meters, IReadOnlyList<string> Features, IReadOnlyDictionary<string, long?> Limits, bool Archived);

    public sealed record PriceDto(string Interval, int IntervalCount, long Amount, string Currency);

    /// <summary>
    /// A meter's allowance and what happens past it (additive to API.md): <c>overage</c> is <c>block</c>, <c>tokens</c> (purchased
    /// tokens pay, <c>tokensPerUnit</c> each) or <c>bill</c> (invoiced at the renewal, <c>overageUnitAmount</c> each, in the
    /// price's minor unit, fractions allowed).
    /// </summary>
    public sealed record MeterDto(string Meter, long? Limit, string Window, string Overage, long? TokensPerUnit, decimal? OverageUnitAmount);
}
