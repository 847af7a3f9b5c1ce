namespace Billing.Usage.Core.Consuming;

/// <summary>
/// POST /api/usage/consume, once its JSON has been read. <see cref="Groups"/>: the groups the caller passed on from the
/// user's token, or null when it passed none (then the groups Billing last saw on the user's own token count).
/// </summary>
public sealed record ConsumeRequest(string UserId, string Meter, long Quantity, string IdempotencyKey, IReadOnlyList<string>? Groups)
{
    public const int MaxTextLength = 200;
    public const long MaxQuantity = 1_000_000_000;
    public const int MaxGroups = 100;
}
