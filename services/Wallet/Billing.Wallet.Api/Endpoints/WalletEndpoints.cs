using System.Security.Claims;
using System.Text.Json.Serialization;
using Billing.Catalog;
using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Stripe;
using Billing.Wallet.Api.Persistence;
using Billing.Wallet.Core.Ledger;
using Billing.Wallet.Core.Requests;
using Stripe;

namespace Billing.Wallet.Api.Endpoints;

/// <summary>Where Checkout sends the user back when the client names no URL.</summary>
public sealed record ReturnUrls(string CheckoutSuccess, string CheckoutCancel)
{
    /// <summary>Where a client-named return URL may point (<see cref="ReturnOrigins"/>).</summary>
    public ReturnOrigins Allowed { get; init; } = new(new HashSet<string>());

    public static ReturnUrls From(IConfiguration configuration)
    {
        var publicUrl = ReturnOrigins.PublicUrl(configuration);
        return new ReturnUrls(publicUrl + "/billing/checkout/success?session_id={CHECKOUT_SESSION_ID}", publicUrl + "/billing/checkout/cancel")
        {
            Allowed = ReturnOrigins.From(configuration),
        };
    }
}

/// <summary>The token pack catalog and the user's own wallet: buy a pack, see the balance and why it is what it is.</summary>
public static class WalletEndpoints
{
    public static IEndpointRouteBuilder MapWalletApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/token-packs", ListPacks)
            .AllowAnonymous()
            .WithName("ListTokenPacks")
            .WithSummary("The catalog's token packs.");

        var group = app.MapGroup("/api/wallet").RequireAuthorization(BillingPolicies.User);
        group.MapPost("/checkout", StartCheckoutAsync)
            .WithName("StartTokenPackCheckout")
            .WithSummary("A Stripe Checkout Session in payment mode for one token pack.");
        group.MapGet("/me", GetMineAsync)
            .WithName("GetMyWallet")
            .WithSummary("The user's token balance and the tokens that will expire.");
        group.MapGet("/me/transactions", GetTransactionsAsync)
            .WithName("GetMyWalletTransactions")
            .WithSummary("The user's ledger, newest first, with cursor paging.");
        return app;
    }

    private static IResult ListPacks(BillingCatalog catalog) =>
        TypedResults.Ok(new PacksResponse(catalog.TokenPacks.Select(p => new PackDto(p.Id, p.Name, p.Tokens, p.Amount, p.Currency, p.ExpiresAfterDays)).ToList()));

    private static async Task<IResult> StartCheckoutAsync(PackCheckoutRequest? request, ClaimsPrincipal user, BillingCatalog catalog,
        StripePrices prices, IStripeClient stripe, StripeCalls calls, ReturnUrls urls, PackCheckouts checkouts, TimeProvider clock, CancellationToken ct)
    {
        var userId = user.UserId()!;
        var (checkout, errors) = WalletRules.Validate(request, catalog, urls.CheckoutSuccess, urls.CheckoutCancel, urls.Allowed.Allows);
        if (checkout is null)
        {
            return Problems.Validation(errors);
        }

        var pack = checkout.Pack;
        var priceId = await prices.FindAsync(pack.LookupKey, ct);
        if (priceId is null)
        {
            return StripePrices.NotInStripe(pack.LookupKey, "token pack");
        }

        // Payments grants from these: metadata on the session, and the same on the payment intent for refunds. The tokens
        // are what this checkout sells: a catalog that changes (or drops the pack) before the payment completes changes
        // nothing for a user who has already paid.
        var metadata = new Dictionary<string, string>
        {
            ["userId"] = userId, ["kind"] = "token_pack", ["packId"] = pack.Id,
            ["tokens"] = pack.Tokens.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["expiresAfterDays"] = (pack.ExpiresAfterDays ?? 0).ToString(System.Globalization.CultureInfo.InvariantCulture), // 0: never
        };
        var options = new global::Stripe.Checkout.SessionCreateOptions
        {
            Mode = "payment",
            ClientReferenceId = userId,
            LineItems = [new global::Stripe.Checkout.SessionLineItemOptions { Price = priceId, Quantity = 1 }],
            SuccessUrl = checkout.SuccessUrl,
            CancelUrl = checkout.CancelUrl,
            Metadata = metadata,
            PaymentIntentData = new global::Stripe.Checkout.SessionPaymentIntentDataOptions { Metadata = new Dictionary<string, string>(metadata) },
        };
        // Subscriptions owns the user ↔ customer link; a pack needs no customer of ours (Checkout makes one).
        if (user.FindFirst("email")?.Value is { Length: > 0 } email)
        {
            options.CustomerEmail = email;
        }

        // A double click (or a reload) gets the same session back while it is open; a user who has paid it gets a new one.
        var sessions = new global::Stripe.Checkout.SessionService(stripe);
        var (outcome, sessionId, url) = await checkouts.StartAsync(userId, pack.Id, IdempotencyKeys.Hash(checkout.SuccessUrl + "|" + checkout.CancelUrl),
            IdempotencyKeys.Hash(string.Join("|", [priceId, options.CustomerEmail ?? "", .. metadata.OrderBy(m => m.Key, StringComparer.Ordinal).Select(m => $"{m.Key}={m.Value}")])),
            clock.GetUtcNow(),
            async (id, t) => (await calls.RunAsync(c => sessions.GetAsync(id, cancellationToken: c), t)).Status,
            async (id, t) =>
            {
                try
                {
                    await calls.RunAsync(c => sessions.ExpireAsync(id, cancellationToken: c), t);
                }
                catch (StripeException ex) when (ex.HttpStatusCode == System.Net.HttpStatusCode.BadRequest)
                {
                    // Paid (or expired) since it was read: the user pays the new one for another pack.
                }
            },
            async (idempotencyKey, t) =>
            {
                var session = await calls.RunAsync(c => sessions.CreateAsync(options, new RequestOptions { IdempotencyKey = idempotencyKey }, c), t);
                return (session.Id, session.Url);
            },
            StripeCalls.AnsweredByStripe, ct);
        return outcome switch
        {
            CheckoutStart.InProgress => Problems.Problem(409, "checkout_in_progress", "A checkout for this pack is being started.",
                "Stripe is answering slowly; try again in a moment."),
            CheckoutStart.Unavailable => Problems.Problem(503, "busy", "Too many checkouts at once.", "Try again in a moment."),
            _ => TypedResults.Ok(new CheckoutResponse(sessionId!, url!)),
        };
    }

    private static async Task<IResult> GetMineAsync(ClaimsPrincipal user, WalletStore store, CancellationToken ct)
    {
        var (balance, expiring) = await store.ViewAsync(user.UserId()!, ct);
        return TypedResults.Ok(new WalletResponse(balance,
            expiring.Count == 0 ? null : expiring.Select(e => new ExpiringDto(e.Amount, TransactionDto.Utc(e.ExpiresAt))).ToList()));
    }

    private static async Task<IResult> GetTransactionsAsync(ClaimsPrincipal user, WalletStore store, string? limit, string? cursor, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        var take = 50;
        if (limit is not null && (!int.TryParse(limit, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out take) || take is < 1 or > 200))
        {
            errors["limit"] = ["a whole number from 1 to 200"];
        }
        long? before = null;
        if (cursor is not null)
        {
            if (Cursor.TryDecode(cursor, out var id))
            {
                before = id;
            }
            else
            {
                errors["cursor"] = ["not a cursor this service handed out; use nextCursor from the previous page"];
            }
        }
        if (errors.Count > 0)
        {
            return Problems.Validation(errors);
        }

        var (items, next) = await store.TransactionsAsync(user.UserId()!, take, before, ct);
        return TypedResults.Ok(new TransactionsResponse(items.Select(TransactionDto.From).ToList(), next is { } n ? Cursor.Encode(n) : null));
    }

    public sealed record PacksResponse(IReadOnlyList<PackDto> Packs);

    public sealed record PackDto(string Id, string Name, long Tokens, long Amount, string Currency,
        [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? ExpiresAfterDays);

    public sealed record CheckoutResponse(string CheckoutSessionId, string Url);

    public sealed record WalletResponse(long Balance,
        [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ExpiringDto>? Expiring);

    public sealed record ExpiringDto(long Amount, DateTimeOffset ExpiresAt);

    public sealed record TransactionsResponse(IReadOnlyList<TransactionDto> Items, string? NextCursor);
}
