using System.Text.Json.Nodes;
using Billing.StripeSimulator.Engine;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Api;

/// <summary>One Stripe API request: the parsed form (query and body), the route values and the simulator.</summary>
public sealed class StripeCall(Sim sim, Form form, HttpContext http)
{
    public Sim Sim { get; } = sim;
    public Form Form { get; } = form;
    public HttpContext Http { get; } = http;

    public string Route(string name) => (string)Http.Request.RouteValues[name]!;

    public JsonObject Expand(JsonObject obj) => Sim.Json.Expand(obj, Form.List("expand"));

    /// <summary>Stripe's metadata update: keys merge, an empty value unsets a key, <c>metadata=</c> clears all.</summary>
    public bool ApplyMetadata(Dictionary<string, string> target, params string[] path)
    {
        if (!Form.Has(path))
        {
            return false;
        }
        if (Form.Str(path) == "")
        {
            target.Clear();
            return true;
        }
        foreach (var (key, value) in Form.Map(path)!)
        {
            if (value.Length == 0)
            {
                target.Remove(key);
            }
            else
            {
                target[key] = value;
            }
        }
        return true;
    }
}

public static class StripeRouteExtensions
{
    /// <summary>Maps a Stripe endpoint: parses the form, runs the handler under the state lock, answers 200 JSON.</summary>
    public static RouteHandlerBuilder MapStripe(this IEndpointRouteBuilder app, string method, string pattern, Func<StripeCall, JsonObject> handler) =>
        app.MapMethods(pattern, [method], async (HttpContext http, Sim sim) =>
        {
            var form = await Form.ReadAsync(http.Request);
            var call = new StripeCall(sim, form, http);
            JsonObject result;
            lock (sim.State.Gate)
            {
                result = handler(call);
            }
            return Results.Text(result.ToJsonString(Rendering.StripeJson.Wire), "application/json", statusCode: 200);
        });
}
