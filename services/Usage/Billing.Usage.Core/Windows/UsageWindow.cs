namespace Billing.Usage.Core.Windows;

/// <summary>A quota window [<see cref="Start"/>, <see cref="End"/>); the counter resets at <see cref="End"/>.</summary>
public readonly record struct UsageWindow(DateTimeOffset Start, DateTimeOffset End)
{
    public bool Contains(DateTimeOffset instant) => instant >= Start && instant < End;
}
