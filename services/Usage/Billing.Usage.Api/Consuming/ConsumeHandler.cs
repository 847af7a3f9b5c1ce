using System.Text.Json;
using Billing.Catalog;
using Billing.ServiceDefaults;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Core.Consuming;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Billing.Usage.Api.Consuming;

/// <summary>The answer of POST /api/usage/consume when it is allowed.</summary>
public sealed record ConsumeAllowed(bool Allowed, string Source, long? Remaining, long TokenBalance, string ConsumptionId);

/// <summary>
/// POST /api/usage/consume: one read (subscriber, balance, earlier answer under the key), a decision in Core, then
/// one transaction that spends and records the answer. A retry under the same key gets the first answer.
/// </summary>
public sealed class ConsumeHandler(ConsumptionStore store, BillingCatalog catalog, TimeProvider clock)
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public async Task<IResult> HandleAsync(ConsumeRequest request, CancellationToken cancellationToken)
    {
        if (!ConsumePolicy.IsKnownMeter(catalog, request.Meter))
        {
            return Problems.Problem(400, "unknown_meter", "Unknown meter.", $"No plan of the catalog has the meter '{request.Meter}'.",
                new Dictionary<string, object?> { ["meter"] = request.Meter });
        }

        var inputs = await store.ReadInputsAsync(request.UserId, request.IdempotencyKey, cancellationToken);
        if (inputs.Existing is { } existing)
        {
            return Replay(request, existing);
        }

        var now = clock.GetUtcNow();
        var consumptionId = Guid.CreateVersion7();
        var decision = ConsumePolicy.Decide(catalog, inputs.Subscriber, request.Meter, request.Groups, now);
        (int StatusCode, string Answer)? answered = decision switch
        {
            ConsumeDecision.AllowWithoutSpending allow => await store.RecordAsync(request, consumptionId, true, allow.Source, 200,
                Serialize(new ConsumeAllowed(true, allow.Source, null, inputs.TokenBalance, consumptionId.ToString())), now, cancellationToken),
            ConsumeDecision.Refuse refuse => await store.RecordAsync(request, consumptionId, false, null, 402,
                Serialize(ProblemOf(Problems.Problem(402, refuse.Code, refuse.Title, refuse.Detail, new Dictionary<string, object?> { ["meter"] = request.Meter }))),
                now, cancellationToken),
            ConsumeDecision.Spend spend => await store.SpendAsync(request, consumptionId, spend.Window, spend.Limit,
                spend.Limit is null ? "unlimited" : "quota",
                Serialize(new ConsumeAllowed(true, spend.Limit is null ? "unlimited" : "quota", null, inputs.TokenBalance, consumptionId.ToString())),
                Serialize(Exhausted(spend, inputs.Subscriber.EffectivePlan(catalog).Id)), now, cancellationToken),
            _ => throw new InvalidOperationException($"Unhandled decision {decision}"),
        };

        if (answered is not { } first)
        {
            // A concurrent request under the same key won: answer as it did.
            var stored = await store.FindAsync(request.IdempotencyKey, cancellationToken)
                ?? throw new InvalidOperationException("The consumption that took the key is gone.");
            return Replay(request, stored);
        }
        return Answer(first.StatusCode, first.Answer);
    }

    /// <summary>The 402 for a spend the window cannot cover; the meter's overage policy decides (token and billed overage come later).</summary>
    private ProblemDetails Exhausted(ConsumeDecision.Spend spend, string planId) => ConsumePolicy.WhenExhausted(spend.Allowance) switch
    {
        ExhaustedAction.Block => ProblemOf(Problems.Problem(402, ConsumePolicy.QuotaExhausted, "The quota is used up.",
            $"The allowance of '{spend.Allowance.Meter}' for this window is used up.",
            new Dictionary<string, object?>
            {
                ["meter"] = spend.Allowance.Meter,
                ["limit"] = spend.Limit,
                ["resetsAt"] = spend.Window.End.UtcDateTime,
                ["upgrade"] = ConsumePolicy.CanUpgrade(catalog, planId, spend.Allowance.Meter, spend.Limit),
            })),
        var other => throw new InvalidOperationException($"Unhandled overage action {other}"),
    };

    private static IResult Replay(ConsumeRequest request, StoredConsumption stored)
    {
        if (stored.UserId != request.UserId || stored.Meter != request.Meter || stored.Quantity != request.Quantity)
        {
            return Problems.Problem(409, "idempotency_conflict", "The idempotency key was used for another consume.",
                "A consume with this idempotency key had a different userId, meter or quantity; use a new key for a new consume.");
        }
        return Answer(stored.StatusCode, stored.Answer);
    }

    private static IResult Answer(int statusCode, string answer) => statusCode == 200
        ? TypedResults.Content(answer, "application/json", System.Text.Encoding.UTF8, 200)
        : TypedResults.Problem(JsonSerializer.Deserialize<ProblemDetails>(answer, Json)!);

    private static ProblemDetails ProblemOf(IResult result) => ((ProblemHttpResult)result).ProblemDetails;

    private static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Json);
}
