using System.Text.Json.Serialization;
using Billing.Wallet.Api.Persistence;

namespace Billing.Wallet.Api.Endpoints;

/// <summary>One ledger entry as API.md shows it; refunds add what was called for and the shortfall.</summary>
public sealed record TransactionDto(
    string Id,
    string Kind,
    long Amount,
    long BalanceAfter,
    string Reference,
    DateTimeOffset CreatedAt,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? Requested = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? Shortfall = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Reason = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] DateTimeOffset? ExpiresAt = null)
{
    public static TransactionDto From(LedgerRow row) => new(
        row.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), row.Kind, row.Amount, row.BalanceAfter, row.Reference,
        Utc(row.CreatedAt), row.Requested, row.Shortfall, row.Reason, row.ExpiresAt is { } e ? Utc(e) : null);

    public static DateTimeOffset Utc(DateTime value) => new(DateTime.SpecifyKind(value, DateTimeKind.Utc));
}
