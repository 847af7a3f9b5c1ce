using Billing.Subscriptions.Api.Persistence;
using Billing.ServiceDefaults.Stripe;
using Stripe;

namespace Billing.Subscriptions.Api.Stripe;

/// <summary>
/// Get-or-create of the user's Stripe customer. Never two customers for one user: the database row is the truth,
/// and concurrent first requests create the customer under one Stripe idempotency key derived from the user id,
/// so Stripe answers them all with the same customer.
/// </summary>
public sealed class StripeCustomers(IStripeClient stripe, StripeCalls calls, SubscriptionStore store)
{
    public async Task<string> GetOrCreateAsync(string userId, string? email, CancellationToken ct)
    {
        if (await store.FindCustomerAsync(userId, ct) is { } existing)
        {
            return existing;
        }

        var options = new CustomerCreateOptions
        {
            Metadata = new Dictionary<string, string> { ["userId"] = userId },
        };
        if (!string.IsNullOrWhiteSpace(email))
        {
            options.Email = email;
        }
        var customer = await calls.RunAsync(c => new CustomerService(stripe).CreateAsync(options,
            new RequestOptions { IdempotencyKey = "billing-customer-" + userId }, c), ct);
        return await store.SaveCustomerAsync(userId, customer.Id, email, ct);
    }
}
