using Billing.ServiceDefaults;
using Billing.Wallet.Api.Persistence;
using Billing.Wallet.Core.Requests;

namespace Billing.Wallet.Api.Endpoints;

/// <summary>
/// What Usage calls directly (not through the gateway): the balance of any user, and the idempotent debit that spends
/// purchased tokens once a quota is used up.
/// </summary>
public static class InternalWalletEndpoints
{
    public static IEndpointRouteBuilder MapInternalWalletApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/internal/wallet").RequireAuthorization(BillingPolicies.Usage);
        group.MapPost("/debit", DebitAsync)
            .WithName("DebitWallet")
            .WithSummary("Spends tokens atomically; the same idempotency key debits once and returns the first answer.");
        group.MapPost("/returns", ReturnAsync)
            .WithName("ReturnDebitedTokens")
            .WithSummary("Gives back unused tokens of a debit (a token-backed reservation), once per debit, into the lots they came from.");
        group.MapGet("/{userId}", GetBalanceAsync)
            .WithName("GetWalletBalance")
            .WithSummary("A user's token balance.");
        return app;
    }

    private static async Task<IResult> DebitAsync(DebitRequest? request, WalletStore store, CancellationToken ct)
    {
        var (debit, errors) = WalletRules.Validate(request);
        if (debit is null)
        {
            return Problems.Validation(errors);
        }

        var outcome = await store.DebitAsync(debit, ct);
        return outcome.Result switch
        {
            DebitResult.Debited => TypedResults.Ok(new DebitResponse(true, outcome.Balance,
                outcome.TransactionId!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture))),
            DebitResult.InsufficientTokens => Problems.Problem(402, "insufficient_tokens", "Not enough tokens.",
                $"The wallet holds {outcome.Balance} tokens; {debit.Amount} were asked for.",
                new Dictionary<string, object?> { ["balance"] = outcome.Balance, ["requested"] = debit.Amount }),
            _ => Problems.Problem(409, "idempotency_conflict", "This idempotency key was used for another debit.",
                "The same key must always name the same user and amount."),
        };
    }

    private static async Task<IResult> ReturnAsync(ReturnRequest? request, WalletStore store, CancellationToken ct)
    {
        var (giveBack, errors) = WalletRules.Validate(request);
        if (giveBack is null)
        {
            return Problems.Validation(errors);
        }

        var outcome = await store.ReturnAsync(giveBack, ct);
        return outcome.Result switch
        {
            ReturnResult.Returned => TypedResults.Ok(new ReturnResponse(true, outcome.Returned, outcome.Balance)),
            ReturnResult.NothingDebited => TypedResults.Ok(new ReturnResponse(false, 0, outcome.Balance)),
            _ => Problems.Problem(409, "idempotency_conflict", "This debit cannot take this return.",
                "The key names another user's debit, a return of another amount was asked before, or more than was debited is asked back."),
        };
    }

    private static async Task<IResult> GetBalanceAsync(string userId, WalletStore store, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        WalletRules.CheckId(userId, "userId", errors);
        if (errors.Count > 0)
        {
            return Problems.Validation(errors);
        }
        var (balance, _) = await store.ViewAsync(userId, ct);
        return TypedResults.Ok(new BalanceResponse(balance));
    }

    public sealed record DebitResponse(bool Debited, long Balance, string TransactionId);

    public sealed record BalanceResponse(long Balance);

    /// <summary><c>debited</c> false: the key was never debited, nothing went back, and no later debit under it will take anything.</summary>
    public sealed record ReturnResponse(bool Debited, long Returned, long Balance);
}
