using Billing.ServiceDefaults;
using Billing.Wallet.Api.Persistence;
using Billing.Wallet.Core.Requests;

namespace Billing.Wallet.Api.Endpoints;

/// <summary>Promotional and trial grants, and the check that every balance equals the sum of its ledger.</summary>
public static class AdminWalletEndpoints
{
    public static IEndpointRouteBuilder MapAdminWalletApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/admin/wallet").RequireAuthorization(BillingPolicies.Admin);
        group.MapPost("/{userId}/grants", GrantAsync)
            .WithName("GrantTokens")
            .WithSummary("Grants promotional or trial tokens once per idempotency key, optionally expiring.");
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

    private static async Task<IResult> VerifyAsync(WalletStore store, CancellationToken ct)
    {
        var (count, mismatches) = await store.VerifyAsync(ct);
        return TypedResults.Ok(new VerifyResponse(mismatches.Count == 0, count, mismatches));
    }

    public sealed record VerifyResponse(bool Ok, int WalletsChecked, IReadOnlyList<WalletMismatch> Mismatches);
}
