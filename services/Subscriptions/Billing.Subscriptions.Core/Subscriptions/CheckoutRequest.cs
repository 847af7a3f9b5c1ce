using Billing.Catalog;

namespace Billing.Subscriptions.Core.Subscriptions;

/// <summary>The body of <c>POST /api/subscriptions/checkout</c>.</summary>
public sealed record CheckoutRequest(string? PlanId, string? Interval, int? IntervalCount, string? SuccessUrl, string? CancelUrl);

/// <summary>A checkout request checked against the catalog.</summary>
public sealed record CheckoutChoice(Plan Plan, Price Price, string SuccessUrl, string CancelUrl);

/// <summary>Validates what a user asks to buy; every problem is named with its field.</summary>
public static class CheckoutRules
{
    /// <summary>
    /// Returns the choice, or the field errors. An archived plan is refused unless it is <paramref name="currentPlanId"/>
    /// (the plan the user has: undoing a pending downgrade back to it is no sale).
    /// </summary>
    public static (CheckoutChoice? Choice, Dictionary<string, string[]> Errors) Validate(
        CheckoutRequest? request, BillingCatalog catalog, string defaultSuccessUrl, string defaultCancelUrl, string? currentPlanId = null,
        Func<Uri, bool>? allowedReturn = null)
    {
        var errors = new Dictionary<string, string[]>();
        if (request is null)
        {
            errors["body"] = ["a JSON body {\"planId\",\"interval\",\"intervalCount\"?} is required"];
            return (null, errors);
        }

        var plan = catalog.FindPlan(request.PlanId);
        if (plan is null)
        {
            errors["planId"] = [$"unknown plan \"{request.PlanId}\"; see GET /api/plans"];
        }
        else if (plan.IsFree)
        {
            errors["planId"] = [$"\"{plan.Id}\" is free: there is nothing to buy"];
        }
        else if (plan.Archived && plan.Id != currentPlanId)
        {
            errors["planId"] = [$"plan \"{plan.Id}\" is no longer offered; see GET /api/plans"];
        }

        Price? price = null;
        if (plan is { IsFree: false })
        {
            price = plan.FindPrice(request.Interval ?? "", request.IntervalCount ?? 1);
            if (price is null)
            {
                var offered = string.Join(", ", plan.Prices.Select(p => $"{p.Interval}×{p.IntervalCount}"));
                errors["interval"] = [$"plan \"{plan.Id}\" has no price for {request.Interval}×{request.IntervalCount ?? 1}; it has {offered}"];
            }
        }

        var success = ReturnUrl.Check(request.SuccessUrl, "successUrl", errors, allowedReturn) ?? defaultSuccessUrl;
        var cancel = ReturnUrl.Check(request.CancelUrl, "cancelUrl", errors, allowedReturn) ?? defaultCancelUrl;
        return errors.Count > 0 ? (null, errors) : (new CheckoutChoice(plan!, price!, success, cancel), errors);
    }
}
