using System.Security.Claims;
using Billing.Catalog;
using Billing.ServiceDefaults;
using Billing.ServiceDefaults.Database;
using Billing.ServiceDefaults.Stripe;
using Billing.Subscriptions.Api.Persistence;
using Billing.Subscriptions.Api.Stripe;
using Billing.Subscriptions.Core.Subscriptions;
using Npgsql;
using Stripe;

namespace Billing.Subscriptions.Api.Endpoints;

/// <summary>Where Checkout and the portal send the user back when the client names no URL.</summary>
public sealed record ReturnUrls(string CheckoutSuccess, string CheckoutCancel, string PortalReturn)
{
    /// <summary>Where a client-named return URL may point (<see cref="ReturnOrigins"/>).</summary>
    public ReturnOrigins Allowed { get; init; } = new(new HashSet<string>());

    /// <summary>
    /// <c>BILLING_NEW_SUBSCRIPTIONS=off</c> stops new subscriptions (503) without a catalog change or touching existing
    /// ones, e.g. during an incident or before a price change.
    /// </summary>
    public bool NewSubscriptionsSwitchedOff { get; init; }

    public static ReturnUrls From(IConfiguration configuration)
    {
        var publicUrl = ReturnOrigins.PublicUrl(configuration);
        return new ReturnUrls(
            publicUrl + "/billing/checkout/success?session_id={CHECKOUT_SESSION_ID}",
            publicUrl + "/billing/checkout/cancel",
            publicUrl + "/billing/account")
        {
            Allowed = ReturnOrigins.From(configuration),
            NewSubscriptionsSwitchedOff = string.Equals(configuration["BILLING_NEW_SUBSCRIPTIONS"], "off", StringComparison.OrdinalIgnoreCase),
        };
    }
}

/// <summary>The user's own subscription: checkout, status, history, customer portal (API.md "Subscriptions").</summary>
public static class SubscriptionEndpoints
{
    public static IEndpointRouteBuilder MapSubscriptionApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api").RequireAuthorization(BillingPolicies.User);
        group.MapPost("/subscriptions/checkout", StartCheckoutAsync)
            .WithName("StartSubscriptionCheckout")
            .WithSummary("Creates (or reuses) the user's Stripe customer and a subscription Checkout Session.");
        group.MapGet("/subscriptions/me", GetMineAsync)
            .WithName("GetMySubscription")
            .WithSummary("The user's plan and subscription status; free users get the free plan with status none.");
        group.MapGet("/subscriptions/me/history", GetHistoryAsync)
            .WithName("GetMySubscriptionHistory")
            .WithSummary("Every recorded change of the user's subscriptions, newest first, with what caused it.");
        group.MapPost("/billing-portal", OpenPortalAsync)
            .WithName("OpenBillingPortal")
            .WithSummary("A Stripe customer portal session for the user.");
        return app;
    }

    private static async Task<IResult> StartCheckoutAsync(CheckoutRequest? request, ClaimsPrincipal user, BillingCatalog catalog,
        SubscriptionStore store, StripeCustomers customers, StripePrices prices, IStripeClient stripe, StripeCalls calls,
        ReturnUrls urls, TimeProvider clock, CheckoutLocks checkoutLocks, CancellationToken ct)
    {
        var userId = user.UserId()!;
        var (choice, errors) = CheckoutRules.Validate(request, catalog, urls.CheckoutSuccess, urls.CheckoutCancel, allowedReturn: urls.Allowed.Allows);
        if (choice is null)
        {
            return Problems.Validation(errors);
        }
        if (!catalog.NewSubscriptionsEnabled || urls.NewSubscriptionsSwitchedOff)
        {
            return Problems.Problem(503, "new_subscriptions_disabled", "New subscriptions are switched off.",
                "Existing subscriptions are not affected; try again later.");
        }

        var current = await store.CurrentAsync(userId, ct);
        if (current is not null && SubscriptionStatus.Live.Contains(current.StripeStatus))
        {
            return Problems.Problem(409, "already_subscribed", "You already have a subscription.",
                "Use POST /api/subscriptions/me/change to switch plans.",
                new Dictionary<string, object?> { ["planId"] = current.PlanId, ["status"] = SubscriptionStatus.ForUser(current) });
        }

        var priceId = await prices.FindAsync(choice.Price.LookupKey, ct);
        if (priceId is null)
        {
            return StripePrices.NotInStripe(choice.Price.LookupKey);
        }
        var (overagePriceIds, missing) = await OverageItems.FindAsync(choice.Plan, choice.Price, prices, ct);
        if (missing is not null)
        {
            return StripePrices.NotInStripe(missing);
        }

        var customerId = await customers.GetOrCreateAsync(userId, user.FindFirst("email")?.Value, ct);
        var metadata = new Dictionary<string, string> { ["userId"] = userId, ["kind"] = "subscription", ["planId"] = choice.Plan.Id };
        var options = new global::Stripe.Checkout.SessionCreateOptions
        {
            Mode = "subscription",
            Customer = customerId,
            ClientReferenceId = userId,
            // The plan's price, and a metered price (no quantity) per meter whose overage the plan bills.
            LineItems = [new global::Stripe.Checkout.SessionLineItemOptions { Price = priceId, Quantity = 1 },
                ..overagePriceIds.Select(id => new global::Stripe.Checkout.SessionLineItemOptions { Price = id })],
            SuccessUrl = choice.SuccessUrl,
            CancelUrl = choice.CancelUrl,
            Metadata = metadata,
            AllowPromotionCodes = true,
            SubscriptionData = new global::Stripe.Checkout.SessionSubscriptionDataOptions
            {
                Metadata = new Dictionary<string, string> { ["userId"] = userId, ["planId"] = choice.Plan.Id },
            },
        };
        var trialDays = choice.Plan.TrialDays > 0 && !await HadSubscriptionAsync(userId, customerId, store, stripe, calls, ct) ? choice.Plan.TrialDays : 0;
        if (trialDays > 0)
        {
            options.SubscriptionData.TrialPeriodDays = trialDays;
            if (!choice.Plan.TrialRequiresPaymentMethod)
            {
                // No card up front: if none was added by the trial's end, the subscription ends instead of going past due.
                options.PaymentMethodCollection = "if_required";
                options.SubscriptionData.TrialSettings = new global::Stripe.Checkout.SessionSubscriptionDataTrialSettingsOptions
                {
                    EndBehavior = new global::Stripe.Checkout.SessionSubscriptionDataTrialSettingsEndBehaviorOptions { MissingPaymentMethod = "cancel" },
                };
            }
        }

        // The key names everything the session is made of (a changed request must not meet Stripe's idempotency error) and
        // a generation, which moves whenever the session on record is not to be handed out again.
        var baseKey = $"billing-checkout-{userId}-{choice.Price.LookupKey}-t{trialDays}-" + IdempotencyKeys.Hash(string.Join("|",
            [priceId, .. overagePriceIds, customerId, choice.Plan.Id, choice.Plan.TrialRequiresPaymentMethod ? "card" : "no-card", choice.SuccessUrl, choice.CancelUrl]));
        var now = clock.GetUtcNow();

        // At most one open checkout per user, or two tabs (monthly and yearly) could both be paid: two subscriptions. Under
        // the user's row lock, any other session is expired in Stripe before a new one is created; the lock's connection
        // comes from a pool of its own, so checkouts waiting on Stripe never starve the rest of the service, and one user's
        // checkouts queue for it one at a time, so a burst of them cannot take that pool from everyone else.
        var (outcome, held) = await checkoutLocks.HoldCheckoutAsync(userId, ct);
        if (held is null)
        {
            return outcome == UserLock.Busy ? CheckoutInProgress() : Problems.Problem(503, "busy", "Too many checkouts at once.", "Try again in a moment.");
        }
        await using var hold = held;
        var (connection, tx) = (held.Connection, held.Transaction);
        OpenCheckout latest;
        try
        {
            latest = await SubscriptionStore.LockCheckoutAsync(connection, tx, userId, ct);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            return CheckoutInProgress(); // another replica's checkout of the user held it for 5 s
        }
        var generation = latest.Generation;
        var sessions = new global::Stripe.Checkout.SessionService(stripe);
        if (latest.SessionId is not null)
        {
            // A double click (or a reload) gets the same session back while it is open and at most ten minutes old.
            if (latest.IdempotencyKey == $"{baseKey}-g{generation}" && latest.CreatedAt is { } made && made > now.UtcDateTime - CheckoutReuse
                && await calls.RunAsync(c => sessions.GetAsync(latest.SessionId, cancellationToken: c), ct) is { Status: "open" } same)
            {
                return TypedResults.Ok(new CheckoutResponse(same.Id, same.Url));
            }
            // Anything else (another price, an older session, one paid or expired since) is expired first.
            if (await ExpireCheckoutAsync(latest.SessionId, stripe, calls, ct) is var (paidSubscription, processing) && paidSubscription is not null)
            {
                return processing
                    ? Problems.Problem(409, "payment_processing", "Your earlier checkout's payment is still being processed.",
                        "A bank debit can take a few days to settle; the subscription starts when it does. Should it fail, a new checkout can be started then.",
                        new Dictionary<string, object?> { ["subscriptionId"] = paidSubscription })
                    : Problems.Problem(409, "already_subscribed", "You already have a subscription.",
                        "A checkout you opened earlier has been paid; it shows here shortly. Use POST /api/subscriptions/me/change to switch plans.",
                        new Dictionary<string, object?> { ["subscriptionId"] = paidSubscription });
            }
            generation++; // a new key: the expired session must not be replayed
        }
        var idempotencyKey = $"{baseKey}-g{generation}";
        global::Stripe.Checkout.Session session;
        try
        {
            session = await calls.RunAsync(c => sessions.CreateAsync(options, new RequestOptions { IdempotencyKey = idempotencyKey }, c), ct);
        }
        catch (Exception ex) when (StripeCalls.AnsweredByStripe(ex))
        {
            // Stripe keeps a refusal for its key for a day: the next attempt (once the cause is mended) takes the next key.
            // A crash before Stripe answered keeps the key, so a retry finds the session Stripe may have made.
            await SubscriptionStore.SaveCheckoutAsync(connection, tx, userId, null, null, null, generation + 1, CancellationToken.None);
            await tx.CommitAsync(CancellationToken.None);
            throw;
        }
        await SubscriptionStore.SaveCheckoutAsync(connection, tx, userId, session.Id, idempotencyKey, now, generation, ct);
        await tx.CommitAsync(ct);
        return TypedResults.Ok(new CheckoutResponse(session.Id, session.Url));
    }

    private static IResult CheckoutInProgress() => Problems.Problem(409, "checkout_in_progress", "A checkout of yours is being started.",
        "Stripe is answering slowly; try again in a moment.");

    /// <summary>How long a checkout session is handed out again for the same price (a double click, a reload).</summary>
    private static readonly TimeSpan CheckoutReuse = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Expires the user's earlier checkout session if it is still open. Returns the subscription it created when it was
    /// paid in the meantime and that subscription is still live (its events may not have reached Billing yet), or when its
    /// payment is still processing (a bank debit: the session is complete, the subscription incomplete until the debit
    /// settles, and Billing has heard of nothing) — a second checkout then would end in two subscriptions. Else null.
    /// </summary>
    private static async Task<(string? SubscriptionId, bool Processing)> ExpireCheckoutAsync(string sessionId, IStripeClient stripe,
        StripeCalls calls, CancellationToken ct)
    {
        var sessions = new global::Stripe.Checkout.SessionService(stripe);
        var previous = await calls.RunAsync(c => sessions.GetAsync(sessionId, cancellationToken: c), ct);
        if (previous.Status == "open")
        {
            try
            {
                previous = await calls.RunAsync(c => sessions.ExpireAsync(sessionId, null,
                    new RequestOptions { IdempotencyKey = $"billing-checkout-expire-{sessionId}" }, c), ct);
            }
            catch (StripeException ex) when (!StripeCalls.IsTransient(ex))
            {
                // No longer open: paid or expired since it was read.
                previous = await calls.RunAsync(c => sessions.GetAsync(sessionId, cancellationToken: c), ct);
            }
        }
        if (previous.Status != "complete" || string.IsNullOrEmpty(previous.SubscriptionId))
        {
            return (null, false);
        }
        var subscription = await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(previous.SubscriptionId, cancellationToken: c), ct);
        return SubscriptionStatus.Live.Contains(subscription.Status) ? (subscription.Id, false)
            : subscription.Status == "incomplete" && previous.PaymentStatus == "unpaid" ? (subscription.Id, true)
            : (null, false);
    }

    /// <summary>
    /// A trial is for a first subscription only: none if Billing stored any subscription of the user, or Stripe knows one of
    /// the customer's (in any status, also one whose events never reached Billing).
    /// </summary>
    private static async Task<bool> HadSubscriptionAsync(string userId, string customerId, SubscriptionStore store, IStripeClient stripe,
        StripeCalls calls, CancellationToken ct)
    {
        if (await store.HadSubscriptionAsync(userId, ct))
        {
            return true;
        }
        var subscriptions = await calls.RunAsync(c => new SubscriptionService(stripe).ListAsync(
            new SubscriptionListOptions { Customer = customerId, Status = "all", Limit = 1 }, cancellationToken: c), ct);
        return subscriptions.Data.Count > 0;
    }

    private static async Task<IResult> GetMineAsync(ClaimsPrincipal user, SubscriptionStore store, BillingCatalog catalog, CancellationToken ct)
    {
        var current = await store.CurrentAsync(user.UserId()!, ct);
        return TypedResults.Ok(SubscriptionStatus.View(current, catalog, catalog.IsUnlimited(user.Groups())));
    }

    private static async Task<IResult> GetHistoryAsync(ClaimsPrincipal user, SubscriptionStore store, int? limit, CancellationToken ct)
    {
        if (limit is < 1 or > 200)
        {
            return Problems.Validation(new Dictionary<string, string[]> { ["limit"] = ["1 to 200"] });
        }
        return TypedResults.Ok(new { items = await store.HistoryAsync(user.UserId()!, limit ?? 50, ct) });
    }

    private static async Task<IResult> OpenPortalAsync(PortalRequest? request, ClaimsPrincipal user, StripeCustomers customers,
        IStripeClient stripe, StripeCalls calls, ReturnUrls urls, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        var returnUrl = Billing.Catalog.ReturnUrl.Check(request?.ReturnUrl, "returnUrl", errors, urls.Allowed.Allows) ?? urls.PortalReturn;
        if (errors.Count > 0)
        {
            return Problems.Validation(errors);
        }
        var customerId = await customers.GetOrCreateAsync(user.UserId()!, user.FindFirst("email")?.Value, ct);
        var session = await calls.RunAsync(c => new global::Stripe.BillingPortal.SessionService(stripe).CreateAsync(
            new global::Stripe.BillingPortal.SessionCreateOptions { Customer = customerId, ReturnUrl = returnUrl }, cancellationToken: c), ct);
        return TypedResults.Ok(new PortalResponse(session.Url));
    }

    public sealed record CheckoutResponse(string CheckoutSessionId, string Url);

    public sealed record PortalRequest(string? ReturnUrl);

    public sealed record PortalResponse(string Url);
}
