using Billing.ServiceDefaults;
using Billing.Wallet.Api.Persistence;
using Billing.Wallet.Core.Requests;

namespace Billing.Wallet.Api.Endpoints;

/// <summary>Promotional and trial grants, corrections, and the check that every balance equals the sum of its ledger.</summary>
public static class AdminWalletEndpoints
{
    public static IEndpointRouteBuilder MapAdminWalletApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/admin/wallet").RequireAuthorization(BillingPolicies.Admin);
        group.MapPost("/{userId}/grants", GrantAsync)
            .WithName("GrantTokens")
            .WithSummary("Grants promotional or trial tokens once per idempotency key, optionally expiring.");
        group.MapPost("/{userId}/adjustments", AdjustAsync)
            .WithName("AdjustTokens")
            .WithSummary("Corrects a balance once per idempotency key: a positive amount adds tokens, a negative one takes them away (never below zero).");
        group.MapGet("/verify", VerifyAsync)
            .WithName("VerifyWallets")
            .WithSummary("The wallets whose balance is not the sum of their ledger (none when the books are right).");
        return app;
    }

    private static async Task<IResult> GrantAsync(string userId, GrantRequest? request, WalletStore store, TimeProvider clock, CancellationToken ct)
    {
        var (grant, errors) = WalletRules.Validate(userId, request, clock.GetUtcNow());
        if (grant is null)
        {
            return Problems.Validation(errors);
        }
        var outcome = await store.GrantAsync(grant, ct);
        return outcome.Conflict
            ? Problems.Problem(409, "idempotency_conflict", "This idempotency key was used for another grant.",
                "The same key must always name the same user and amount.")
            : TypedResults.Ok(TransactionDto.From(outcome.Entry!));
    }

    private static async Task<IResult> AdjustAsync(string userId, AdjustmentRequest? request, WalletStore store, CancellationToken ct)
    {
        var (adjustment, errors) = WalletRules.Validate(userId, request);
        if (adjustment is null)
        {
            return Problems.Validation(errors);
        }
        var outcome = await store.AdjustAsync(adjustment, ct);
        if (outcome.Conflict)
        {
            return Problems.Problem(409, "idempotency_conflict", "This idempotency key was used for another adjustment.",
                "The same key must always name the same user and amount.");
        }
        return outcome.Entry is { } entry
            ? TypedResults.Ok(TransactionDto.From(entry))
            : Problems.Problem(409, "insufficient_tokens", "The wallet holds fewer tokens than the adjustment takes away.",
                $"The wallet holds {outcome.Balance} tokens; {-adjustment.Amount} were to be taken away. Nothing was changed.",
                new Dictionary<string, object?> { ["balance"] = outcome.Balance, ["requested"] = -adjustment.Amount });
    }

    private static async Task<IResult> VerifyAsync(WalletStore store, CancellationToken ct)
    {
        var (count, mismatches) = await store.VerifyAsync(ct);
        return TypedResults.Ok(new VerifyResponse(mismatches.Count == 0, count, mismatches));
    }

    public sealed record VerifyResponse(bool Ok, int WalletsChecked, IReadOnlyList<WalletMismatch> Mismatches);
}
