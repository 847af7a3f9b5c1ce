using System.Text.Json.Nodes;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Api;

public static class EventsApi
{
    public static void MapEventsApi(this IEndpointRouteBuilder app)
    {
        app.MapStripe("GET", "/v1/events", ListEvents);
        app.MapStripe("GET", "/v1/events/{id}", c => c.Sim.Json.Event(c.Sim.Event(c.Route("id"))));
    }

    private static JsonObject ListEvents(StripeCall c)
    {
        var f = c.Form;
        var exact = f.Long("created");
        var gt = f.Long("created", "gt");
        var gte = f.Long("created", "gte");
        var lt = f.Long("created", "lt");
        var lte = f.Long("created", "lte");
        var type = f.Str("type");
        var types = f.List("types");
        var deliverySuccess = f.Bool("delivery_success");
        if (type is not null && types.Count > 0)
        {
            throw StripeError.Invalid("types", "You may not specify both `type` and `types`.");
        }
        var events = c.Sim.State.Events
            .Where(e => exact is null || e.Created == exact)
            .Where(e => gt is null || e.Created > gt)
            .Where(e => gte is null || e.Created >= gte)
            .Where(e => lt is null || e.Created < lt)
            .Where(e => lte is null || e.Created <= lte)
            .Where(e => type is null || TypeMatches(type, e.Type))
            .Where(e => types.Count == 0 || types.Any(t => TypeMatches(t, e.Type)))
            .Where(e => deliverySuccess is null || e.Delivered == deliverySuccess)
            .OrderByDescending(e => e.Sequence);
        return c.Sim.Page(events, e => e.Id, c.Sim.Json.Event, f, "/v1/events");
    }

    /// <summary>Stripe allows one <c>*</c> wildcard, e.g. <c>invoice.*</c>.</summary>
    private static bool TypeMatches(string pattern, string type) =>
        pattern.EndsWith('*') ? type.StartsWith(pattern[..^1], StringComparison.Ordinal) : pattern == type;
}
