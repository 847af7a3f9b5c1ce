using Billing.ServiceDefaults;
using Billing.Usage.Api.Reservations;

namespace Billing.Usage.Api.Endpoints;

/// <summary>Reservations for streaming AI calls whose cost is known at the end (scope <c>billing.usage</c>).</summary>
public static class ReservationEndpoints
{
    public static IEndpointRouteBuilder MapReservationApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/usage/reservations").RequireAuthorization(BillingPolicies.Usage).WithTags("Usage");
        group.MapPost("/", async (HttpRequest http, ReservationHandler handler, CancellationToken cancellationToken) =>
            {
                var (request, ttl, errors) = await ConsumeRequestReader.ReadReservationAsync(http, cancellationToken);
                return request is null ? Problems.Validation(errors) : await handler.ReserveAsync(request, ttl, cancellationToken);
            })
            .WithName("ReserveQuota")
            .WithSummary("Reserves part of a window for a streaming call, once per idempotency key.")
            .Accepts<ReserveBody>("application/json")
            .ProducesProblem(400)
            .ProducesProblem(402)
            .ProducesProblem(409);

        group.MapPost("/{id}/commit", async (string id, HttpRequest http, ReservationHandler handler, CancellationToken cancellationToken) =>
            {
                var (quantity, errors) = await ConsumeRequestReader.ReadCommitAsync(http, cancellationToken);
                return quantity is null ? Problems.Validation(errors) : await handler.CommitAsync(id, quantity.Value, cancellationToken);
            })
            .WithName("CommitReservation")
            .WithSummary("Spends the amount actually used (at most the reserved one); the rest goes back to the window.")
            .Accepts<CommitBody>("application/json")
            .ProducesProblem(400)
            .ProducesProblem(404)
            .ProducesProblem(409);

        group.MapPost("/{id}/release", (string id, ReservationHandler handler, CancellationToken cancellationToken) =>
                handler.ReleaseAsync(id, cancellationToken))
            .WithName("ReleaseReservation")
            .WithSummary("Gives the whole reservation back to the window.")
            .ProducesProblem(404)
            .ProducesProblem(409);
        return app;
    }

    /// <summary>The reservation body, for the OpenAPI document (the endpoint reads it by hand).</summary>
    public sealed record ReserveBody(string UserId, string Meter, long Quantity, string IdempotencyKey, int? TtlSeconds, IReadOnlyList<string>? Groups);

    public sealed record CommitBody(long Quantity);
}
