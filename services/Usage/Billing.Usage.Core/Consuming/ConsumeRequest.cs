namespace Billing.Usage.Core.Consuming;

/// <summary>POST /api/usage/consume, once its JSON has been read.</summary>
public sealed record ConsumeRequest(string UserId, string Meter, long Quantity, string IdempotencyKey, IReadOnlyList<string> Groups)
{
    public const int MaxTextLength = 200;
    public const long MaxQuantity = 1_000_000_000;
    public const int MaxGroups = 100;
}
