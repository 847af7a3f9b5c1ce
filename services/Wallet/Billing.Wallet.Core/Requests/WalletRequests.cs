using Billing.Catalog;

namespace Billing.Wallet.Core.Requests;

/// <summary>The body of <c>POST /api/wallet/checkout</c>.</summary>
public sealed record PackCheckoutRequest(string? PackId, string? SuccessUrl, string? CancelUrl);

/// <summary>The body of <c>POST /internal/wallet/debit</c>.</summary>
public sealed record DebitRequest(string? UserId, long? Amount, string? IdempotencyKey, string? Reference);

/// <summary>
/// The body of <c>POST /internal/wallet/returns</c>: give back <c>amount</c> of the tokens the debit under
/// <c>idempotencyKey</c> took (a reservation that used less than it reserved), or all of them (<c>all: true</c>, no amount).
/// </summary>
public sealed record ReturnRequest(string? UserId, long? Amount, string? IdempotencyKey, string? Reason, bool? All = null);

/// <summary>The body of <c>POST /api/admin/wallet/{userId}/grants</c>.</summary>
public sealed record GrantRequest(long? Amount, string? IdempotencyKey, string? Reason, DateTimeOffset? ExpiresAt);

/// <summary>The body of <c>POST /api/admin/wallet/{userId}/adjustments</c>: a correction, positive or negative.</summary>
public sealed record AdjustmentRequest(long? Amount, string? IdempotencyKey, string? Reason);

/// <summary>An adjustment that passed validation (<see cref="Amount"/> is never 0).</summary>
public sealed record Adjustment(string UserId, long Amount, string IdempotencyKey, string Reason);

/// <summary>A debit that passed validation.</summary>
public sealed record Debit(string UserId, long Amount, string IdempotencyKey, string Reference);

/// <summary>A return that passed validation: <see cref="IdempotencyKey"/> names the debit; a null <see cref="Amount"/> returns all of it.</summary>
public sealed record DebitReturn(string UserId, long? Amount, string IdempotencyKey, string Reason);

/// <summary>A grant that passed validation.</summary>
public sealed record Grant(string UserId, long Amount, string IdempotencyKey, string Reason, DateTimeOffset? ExpiresAt);

/// <summary>A pack checkout that passed validation.</summary>
public sealed record PackCheckout(TokenPack Pack, string SuccessUrl, string CancelUrl);

/// <summary>Checks what callers send; every problem is named with its field, and nothing invalid reaches the ledger.</summary>
public static class WalletRules
{
    /// <summary>The largest amount one request may move (10^12 tokens).</summary>
    public const long MaxAmount = Billing.Contracts.TokenLimits.MaxPerOperation;
    public const int MaxIdLength = 200;
    public const int MaxTextLength = 500;

    public static (Debit? Debit, Dictionary<string, string[]> Errors) Validate(DebitRequest? request)
    {
        var errors = new Dictionary<string, string[]>();
        if (request is null)
        {
            errors["body"] = ["a JSON body {\"userId\",\"amount\",\"idempotencyKey\",\"reference\"?} is required"];
            return (null, errors);
        }
        CheckId(request.UserId, "userId", errors);
        CheckAmount(request.Amount, "amount", errors);
        CheckId(request.IdempotencyKey, "idempotencyKey", errors);
        CheckText(request.Reference, "reference", required: false, errors);
        return errors.Count > 0
            ? (null, errors)
            : (new Debit(request.UserId!, request.Amount!.Value, request.IdempotencyKey!, request.Reference ?? request.IdempotencyKey!), errors);
    }

    public static (DebitReturn? Return, Dictionary<string, string[]> Errors) Validate(ReturnRequest? request)
    {
        var errors = new Dictionary<string, string[]>();
        if (request is null)
        {
            errors["body"] = ["a JSON body {\"userId\",\"amount\" or \"all\": true,\"idempotencyKey\",\"reason\"?} is required"];
            return (null, errors);
        }
        CheckId(request.UserId, "userId", errors);
        if (request.All == true)
        {
            if (request.Amount is not null)
            {
                errors["amount"] = ["leave it out with \"all\": true"];
            }
        }
        else
        {
            CheckAmount(request.Amount, "amount", errors);
        }
        CheckId(request.IdempotencyKey, "idempotencyKey", errors);
        CheckText(request.Reason, "reason", required: false, errors);
        return errors.Count > 0
            ? (null, errors)
            : (new DebitReturn(request.UserId!, request.All == true ? null : request.Amount, request.IdempotencyKey!, request.Reason ?? "unused tokens returned"), errors);
    }

    public static (Grant? Grant, Dictionary<string, string[]> Errors) Validate(string userId, GrantRequest? request, DateTimeOffset now)
    {
        var errors = new Dictionary<string, string[]>();
        CheckId(userId, "userId", errors);
        if (request is null)
        {
            errors["body"] = ["a JSON body {\"amount\",\"idempotencyKey\",\"reason\",\"expiresAt\"?} is required"];
            return (null, errors);
        }
        CheckAmount(request.Amount, "amount", errors);
        CheckId(request.IdempotencyKey, "idempotencyKey", errors);
        CheckText(request.Reason, "reason", required: true, errors);
        if (request.ExpiresAt is { } expiresAt && expiresAt <= now)
        {
            errors["expiresAt"] = ["must be in the future"];
        }
        return errors.Count > 0
            ? (null, errors)
            : (new Grant(userId, request.Amount!.Value, request.IdempotencyKey!, request.Reason!, request.ExpiresAt?.ToUniversalTime()), errors);
    }

    public static (Adjustment? Adjustment, Dictionary<string, string[]> Errors) Validate(string userId, AdjustmentRequest? request)
    {
        var errors = new Dictionary<string, string[]>();
        CheckId(userId, "userId", errors);
        if (request is null)
        {
            errors["body"] = ["a JSON body {\"amount\",\"idempotencyKey\",\"reason\"} is required"];
            return (null, errors);
        }
        if (request.Amount is not { } amount || amount == 0 || Math.Abs(amount) > MaxAmount)
        {
            errors["amount"] = [$"a non-zero whole number of tokens from -{MaxAmount} to {MaxAmount} (negative takes tokens away)"];
        }
        CheckId(request.IdempotencyKey, "idempotencyKey", errors);
        CheckText(request.Reason, "reason", required: true, errors);
        return errors.Count > 0
            ? (null, errors)
            : (new Adjustment(userId, request.Amount!.Value, request.IdempotencyKey!, request.Reason!), errors);
    }

    public static (PackCheckout? Checkout, Dictionary<string, string[]> Errors) Validate(
        PackCheckoutRequest? request, BillingCatalog catalog, string defaultSuccessUrl, string defaultCancelUrl, Func<Uri, bool>? allowedReturn = null)
    {
        var errors = new Dictionary<string, string[]>();
        if (request is null)
        {
            errors["body"] = ["a JSON body {\"packId\",\"successUrl\"?,\"cancelUrl\"?} is required"];
            return (null, errors);
        }
        var pack = catalog.FindPack(request.PackId);
        if (pack is null)
        {
            errors["packId"] = [$"unknown token pack \"{Shorten(request.PackId)}\"; see GET /api/token-packs"];
        }
        var success = ReturnUrl.Check(request.SuccessUrl, "successUrl", errors, allowedReturn) ?? defaultSuccessUrl;
        var cancel = ReturnUrl.Check(request.CancelUrl, "cancelUrl", errors, allowedReturn) ?? defaultCancelUrl;
        return errors.Count > 0 ? (null, errors) : (new PackCheckout(pack!, success, cancel), errors);
    }

    public static void CheckId(string? value, string field, Dictionary<string, string[]> errors)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            errors[field] = ["required"];
        }
        else if (value.Length > MaxIdLength)
        {
            errors[field] = [$"at most {MaxIdLength} characters"];
        }
        else if (value.Any(char.IsControl))
        {
            errors[field] = ["no control characters"];
        }
    }

    private static void CheckAmount(long? amount, string field, Dictionary<string, string[]> errors)
    {
        if (amount is null)
        {
            errors[field] = ["required"];
        }
        else if (amount is <= 0 or > MaxAmount)
        {
            errors[field] = [$"a whole number of tokens from 1 to {MaxAmount}"];
        }
    }

    private static void CheckText(string? value, string field, bool required, Dictionary<string, string[]> errors)
    {
        if (value is null || (required && string.IsNullOrWhiteSpace(value)))
        {
            if (required)
            {
                errors[field] = ["required"];
            }
            return;
        }
        if (value.Length > MaxTextLength)
        {
            errors[field] = [$"at most {MaxTextLength} characters"];
        }
    }

    private static string Shorten(string? value) => value is null ? "" : value.Length > 60 ? value[..60] + "…" : value;
}
