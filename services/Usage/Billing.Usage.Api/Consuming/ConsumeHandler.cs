using System.Text.Json;
using Billing.Catalog;
using Billing.ServiceDefaults;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Api.Spending;
using Billing.Usage.Api.Wallet;
using Billing.Usage.Core.Consuming;
using Billing.Usage.Core.Subscribers;
using Billing.Usage.Core.Windows;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Billing.Usage.Api.Consuming;

/// <summary>The answer of POST /api/usage/consume when it is allowed.</summary>
public sealed record ConsumeAllowed(bool Allowed, string Source, long? Remaining, long TokenBalance, string ConsumptionId);

/// <summary>
/// POST /api/usage/consume. The subscriber comes from memory (<see cref="SubscriberCache"/>), the decision from Core, and
/// the check-and-spend is one element of <c>usage_consume_many</c>, the one statement in which the group-commit
/// <see cref="SpendWriter"/> runs a batch of spends; the answer goes out only after that transaction has committed. A retry under the same
/// key gets the first answer. A <c>tokens</c> meter whose window cannot cover the spend claims the key, then asks Wallet
/// to debit the whole spend with the same key.
/// </summary>
public sealed class ConsumeHandler(SubscriberCache subscribers, SpendWriter writer, ConsumptionStore store, WalletClient wallet,
    TokenClaimExpiry claims, BillingCatalog catalog, TimeProvider clock, ILogger<ConsumeHandler> logger)
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private const int MaxStaleRetries = 4;

    public async Task<IResult> HandleAsync(ConsumeRequest request, CancellationToken cancellationToken, SpendWriter.ComingSpend? coming = null)
    {
        if (!ConsumePolicy.IsKnownMeter(catalog, request.Meter))
        {
            return Problems.Problem(400, "unknown_meter", "Unknown meter.", $"No plan of the catalog has the meter '{request.Meter}'.",
                new Dictionary<string, object?> { ["meter"] = request.Meter });
        }

        for (var attempt = 0; ; attempt++)
        {
            var subscriber = await subscribers.GetAsync(request.UserId, fresh: attempt > 0, cancellationToken);
            var now = clock.GetUtcNow();
            var decision = ConsumePolicy.Decide(catalog, subscriber.State, request.Meter, request.Groups, now);
            var result = await writer.SubmitAsync(CommandFor(request, subscriber, decision, now), coming);
            switch (result.Outcome)
            {
                case SpendOutcome.Answered:
                    return Answer(result.StatusCode, result.Answer!);
                case SpendOutcome.Stored:
                    return Replay(request, result) ?? Answer(result.StatusCode, result.Answer!);
                case SpendOutcome.NeedsTokens:
                    return Replay(request, result) ?? await PayWithTokensAsync(request, subscriber.State, decision, now, cancellationToken);
                case SpendOutcome.Stale when attempt < MaxStaleRetries:
                    continue;
                default:
                    logger.LogWarning("The subscriber {UserId} kept changing during a consume", request.UserId);
                    return Problems.Problem(503, "busy", "The subscription is changing right now; try again.",
                        "Nothing was spent; retry with the same idempotency key.");
            }
        }
    }

    private SpendCommand CommandFor(ConsumeRequest request, VersionedSubscriber subscriber, ConsumeDecision decision, DateTimeOffset now)
    {
        var command = new SpendCommand
        {
            Key = request.IdempotencyKey,
            ConsumptionId = Guid.CreateVersion7(now),
            UserId = request.UserId,
            Meter = request.Meter,
            Quantity = request.Quantity,
            Version = subscriber.Version,
            Spends = false,
            Now = now,
        };
        return decision switch
        {
            ConsumeDecision.AllowWithoutSpending allow => command with { Status = 200, Source = allow.Source },
            ConsumeDecision.Refuse refuse => command with
            {
                Status = 402,
                Answer = Serialize(ProblemOf(Problems.Problem(402, refuse.Code, refuse.Title, refuse.Detail,
                    new Dictionary<string, object?> { ["meter"] = request.Meter }))),
            },
            ConsumeDecision.Spend spend => command with
            {
                Spends = true,
                WindowStart = spend.Window.Start,
                WindowEnd = spend.Window.End,
                Limit = spend.Limit,
                Overage = ConsumePolicy.WhenExhausted(spend.Allowance),
                EventName = spend.Allowance.StripeMeterEventName,
                // The refusal to record if a block window cannot cover the spend.
                Answer = spend.Limit is not null && ConsumePolicy.WhenExhausted(spend.Allowance) == ExhaustedAction.Block
                    ? ExhaustedAnswer(spend, subscriber.State) : null,
            },
            _ => throw new InvalidOperationException($"Unhandled decision {decision}"),
        };
    }

    /// <summary>
    /// The 402 a block window records when it cannot cover the spend. Every spend carries it (the database decides), so
    /// it is made once per plan, meter, limit and window rather than once per request.
    /// </summary>
    private string ExhaustedAnswer(ConsumeDecision.Spend spend, SubscriberState state)
    {
        var planId = state.EffectivePlan(catalog).Id;
        var key = (planId, spend.Allowance.Meter, spend.Limit, spend.Window.End.UtcTicks);
        if (_refusals.TryGetValue(key, out var answer))
        {
            return answer;
        }
        if (_refusals.Count > 10_000)
        {
            _refusals.Clear();
        }
        return _refusals[key] = Serialize(Exhausted(spend.Allowance, spend.Window, spend.Limit, state));
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Plan, string Meter, long? Limit, long End), string> _refusals = new();

    /// <summary>The window cannot cover a spend on a <c>tokens</c> meter and the key is claimed: Wallet's debit decides.</summary>
    private async Task<IResult> PayWithTokensAsync(ConsumeRequest request, SubscriberState state, ConsumeDecision decision, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        var (allowance, window) = decision is ConsumeDecision.Spend spend
            ? (spend.Allowance, spend.Window)
            : (TokenAllowance(request.Meter), UsageWindows.Current(TokenAllowance(request.Meter), state, now));
        var claim = await store.ClaimAsync(request.IdempotencyKey, window.Start, ConsumePolicy.TokensFor(allowance, request.Quantity), cancellationToken);
        if (claims.TooOldToFinish(claim.CreatedAt))
        {
            // A retry long after the claim: the sweeper is (or soon will be) giving back whatever Wallet took under the
            // key, so this request must not debit now. The sweeper records the same answer.
            return Answer(409, TokenClaimExpiry.ExpiredAnswer);
        }
        WalletDebit debit;
        try
        {
            debit = await wallet.DebitAsync(request.UserId, claim.Tokens, TokenClaimExpiry.WalletKeyOf(claim.ConsumptionId),
                $"usage:{request.Meter}:{claim.ConsumptionId}", cancellationToken);
        }
        catch (WalletUnavailableException ex)
        {
            logger.LogWarning(ex, "Wallet is unavailable for consume {Key}", request.IdempotencyKey);
            return Problems.Problem(503, "wallet_unavailable", "Purchased tokens cannot be checked right now.",
                "Nothing was spent; retry with the same idempotency key.");
        }

        long? remaining = allowance.Limit is { } limit ? Math.Max(0, limit - claim.Used) : null;
        var (status, answer) = debit switch
        {
            WalletDebit.Debited ok => (200, Serialize(new ConsumeAllowed(true, "tokens", remaining, ok.Balance, claim.ConsumptionId.ToString()))),
            WalletDebit.Insufficient poor => (402, Serialize(InsufficientTokens(allowance, window, state, poor.Balance, claim.Tokens))),
            _ => (409, ""),
        };
        if (status == 409)
        {
            return Problems.Problem(409, "idempotency_conflict", "The idempotency key was used for another debit.",
                "Wallet holds a debit under this key for another user or amount; use a new key for a new consume.");
        }
        var balanceAfter = debit is WalletDebit.Debited debited ? (request.UserId, debited.Balance, clock.GetUtcNow()) : ((string, long, DateTimeOffset)?)null;
        // Only while the claim is younger than the sweeper's timeout: past it, the sweeper gives back whatever Wallet took
        // (it may be doing so right now), so this request must not record an allowed spend; it answers as the sweeper will.
        var settled = await store.SettleTokensAsync(request.IdempotencyKey, status, answer, balanceAfter, clock, claims.Timeout, cancellationToken);
        return settled is { } s ? Answer(s.StatusCode, s.Answer) : Answer(409, TokenClaimExpiry.ExpiredAnswer);
    }

    private MeterAllowance TokenAllowance(string meter) =>
        ConsumePolicy.TokenAllowance(catalog, meter) ?? throw new InvalidOperationException($"No plan pays '{meter}' with tokens.");

    private ProblemDetails Exhausted(MeterAllowance allowance, UsageWindow window, long? limit, SubscriberState state) =>
        ProblemOf(Problems.Problem(402, ConsumePolicy.QuotaExhausted, "The quota is used up.",
            $"The allowance of '{allowance.Meter}' for this window is used up.", ExhaustedFields(allowance, window, limit, state)));

    private ProblemDetails InsufficientTokens(MeterAllowance allowance, UsageWindow window, SubscriberState state, long balance, long requested)
    {
        var fields = ExhaustedFields(allowance, window, allowance.Limit, state);
        fields["balance"] = balance;
        fields["requested"] = requested;
        return ProblemOf(Problems.Problem(402, ConsumePolicy.InsufficientTokens, "Not enough purchased tokens.",
            $"The allowance of '{allowance.Meter}' for this window cannot cover the spend and the wallet holds {balance} of the {requested} tokens it costs.",
            fields));
    }

    private Dictionary<string, object?> ExhaustedFields(MeterAllowance allowance, UsageWindow window, long? limit, SubscriberState state) => new()
    {
        ["meter"] = allowance.Meter,
        ["limit"] = limit,
        ["resetsAt"] = window.End.UtcDateTime,
        ["upgrade"] = ConsumePolicy.CanUpgrade(catalog, state.EffectivePlan(catalog).Id, allowance.Meter, limit),
    };

    /// <summary>A 409 when the key was first used for another consume; null when the stored answer applies.</summary>
    private static IResult? Replay(ConsumeRequest request, SpendResult stored) =>
        stored.StoredUser != request.UserId || stored.StoredMeter != request.Meter || stored.StoredQuantity != request.Quantity
            ? Problems.Problem(409, "idempotency_conflict", "The idempotency key was used for another consume.",
                "A consume with this idempotency key had a different userId, meter or quantity; use a new key for a new consume.")
            : null;

    internal static IResult Answer(int statusCode, string answer) => statusCode == 200
        ? TypedResults.Content(answer, "application/json", System.Text.Encoding.UTF8, 200)
        : TypedResults.Problem(JsonSerializer.Deserialize<ProblemDetails>(answer, Json)!);

    internal static ProblemDetails ProblemOf(IResult result) => ((ProblemHttpResult)result).ProblemDetails;

    internal static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Json);
}
