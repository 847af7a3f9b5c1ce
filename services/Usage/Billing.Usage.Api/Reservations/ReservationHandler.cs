using Billing.Catalog;
using Billing.ServiceDefaults;
using Billing.Usage.Api.Consuming;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Api.Spending;
using Billing.Usage.Core.Consuming;
using Billing.Usage.Core.Reservations;
using Billing.Usage.Core.Subscribers;
using Billing.Usage.Api.Wallet;

namespace Billing.Usage.Api.Reservations;

/// <summary>
/// Reservations for streaming calls: reserve (counts against the window at once, atomically, like a consume) → commit
/// the amount actually used (the rest goes back) or release. An expired reservation is released by the
/// <see cref="ReservationSweeper"/>. Everything is in PostgreSQL, so a restart loses nothing. On a <c>tokens</c> meter
/// whose window cannot cover the reservation, purchased tokens pay for the whole of it, as for a consume: the key is
/// claimed, Wallet debits under <c>reservation:&lt;id&gt;</c>, and whatever the commit does not use (all of it on a
/// release or an expiry) is returned to the wallet through <see cref="TokenReturns"/>.
/// </summary>
public sealed class ReservationHandler(SubscriberCache subscribers, ReservationStore store, TokenReturns returns, WalletClient wallet,
    BillingCatalog catalog, TimeProvider clock, ILogger<ReservationHandler> logger)
{
    public async Task<IResult> ReserveAsync(ConsumeRequest request, int? ttlSeconds, CancellationToken cancellationToken)
    {
        if (!ConsumePolicy.IsKnownMeter(catalog, request.Meter))
        {
            return Problems.Problem(400, "unknown_meter", "Unknown meter.", $"No plan of the catalog has the meter '{request.Meter}'.",
                new Dictionary<string, object?> { ["meter"] = request.Meter });
        }
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var subscriber = await subscribers.GetAsync(request.UserId, fresh: attempt > 0, cancellationToken);
            var now = clock.GetUtcNow();
            var decision = ConsumePolicy.Decide(catalog, subscriber.State, request.Meter, request.Groups, now);
            var command = new ReserveCommand
            {
                Key = request.IdempotencyKey,
                ReservationId = Guid.CreateVersion7(now),
                UserId = request.UserId,
                Meter = request.Meter,
                Quantity = request.Quantity,
                Version = subscriber.Version,
                Mode = 1,
                ExpiresAt = ReservationRules.ExpiresAt(now, ttlSeconds),
                Now = now,
            };
            command = decision switch
            {
                ConsumeDecision.AllowWithoutSpending => command,
                ConsumeDecision.Refuse refuse => command with
                {
                    Mode = 2,
                    Refusal = ConsumeHandler.Serialize(ConsumeHandler.ProblemOf(Problems.Problem(402, refuse.Code, refuse.Title, refuse.Detail,
                        new Dictionary<string, object?> { ["meter"] = request.Meter }))),
                },
                ConsumeDecision.Spend spend => command with
                {
                    Mode = 0,
                    WindowStart = spend.Window.Start,
                    WindowEnd = spend.Window.End,
                    Limit = spend.Limit,
                    Overage = (int)ConsumePolicy.WhenExhausted(spend.Allowance),
                    EventName = spend.Allowance.StripeMeterEventName,
                    TokensPerUnit = ConsumePolicy.WhenExhausted(spend.Allowance) == ExhaustedAction.Tokens ? ConsumePolicy.TokensFor(spend.Allowance, 1) : 0,
                    Refusal = ConsumeHandler.Serialize(ConsumeHandler.ProblemOf(Problems.Problem(402, ConsumePolicy.QuotaExhausted,
                        "The quota cannot cover the reservation.",
                        $"What is left of '{spend.Allowance.Meter}' in this window is less than the reservation.",
                        new Dictionary<string, object?>
                        {
                            ["meter"] = spend.Allowance.Meter,
                            ["limit"] = spend.Limit,
                            ["resetsAt"] = spend.Window.End.UtcDateTime,
                            ["upgrade"] = ConsumePolicy.CanUpgrade(catalog, subscriber.State.EffectivePlan(catalog).Id, spend.Allowance.Meter, spend.Limit),
                        }))),
                },
                _ => throw new InvalidOperationException($"Unhandled decision {decision}"),
            };

            var (result, reservationId, claimTokens) = await store.ReserveAsync(command, cancellationToken);
            switch (result.Outcome)
            {
                case SpendOutcome.Answered:
                    return ConsumeHandler.Answer(result.StatusCode, result.Answer!);
                case SpendOutcome.Stored or SpendOutcome.NeedsTokens
                    when result.StoredUser != request.UserId || result.StoredMeter != request.Meter || result.StoredQuantity != request.Quantity:
                    return Problems.Problem(409, "idempotency_conflict", "The idempotency key was used for another reservation.",
                        "A reservation with this idempotency key had a different userId, meter or quantity; use a new key.");
                case SpendOutcome.Stored:
                    return ConsumeHandler.Answer(result.StatusCode, result.Answer!);
                case SpendOutcome.NeedsTokens:
                    // A new claim, or one left by an earlier attempt (whose debit is the one to finish, at the tokens
                    // the claim names, even if the subscriber changed since).
                    return await PayWithTokensAsync(reservationId!.Value, claimTokens, request, decision as ConsumeDecision.Spend, subscriber.State,
                        cancellationToken);
            }
        }
        logger.LogWarning("The subscriber {UserId} kept changing during a reservation", request.UserId);
        return Problems.Problem(503, "busy", "The subscription is changing right now; try again.", "Nothing was reserved; retry with the same idempotency key.");
    }

    /// <summary>
    /// The window cannot cover a reservation on a <c>tokens</c> meter and the key is claimed: Wallet debits the whole
    /// reservation's tokens under <c>reservation:&lt;id&gt;</c> (a retry debits once), then the claim becomes the
    /// reservation, or a 402 <c>insufficient_tokens</c>. If Wallet cannot be reached the claim stays: a retry under the same
    /// key finishes it, and if none comes it expires, and anything Wallet took goes back.
    /// </summary>
    private async Task<IResult> PayWithTokensAsync(Guid reservationId, long tokens, ConsumeRequest request, ConsumeDecision.Spend? spend,
        SubscriberState state, CancellationToken cancellationToken)
    {
        var allowance = spend?.Allowance ?? TokenAllowance(request.Meter);
        WalletDebit debit;
        try
        {
            debit = await wallet.DebitAsync(request.UserId, tokens, TokenReturns.KeyOf(reservationId),
                $"reservation:{request.Meter}:{reservationId}", cancellationToken);
        }
        catch (WalletUnavailableException ex)
        {
            logger.LogWarning(ex, "Wallet is unavailable for reservation {ReservationId}", reservationId);
            return Problems.Problem(503, "wallet_unavailable", "Purchased tokens cannot be checked right now.",
                "Nothing was reserved yet; retry with the same idempotency key.");
        }

        var now = clock.GetUtcNow();
        var (status, answer) = debit switch
        {
            WalletDebit.Debited ok => await store.DebitedAsync(reservationId, request.UserId, 200, null, ok.Balance, now, cancellationToken),
            WalletDebit.Insufficient poor => await store.DebitedAsync(reservationId, request.UserId, 402, ConsumeHandler.Serialize(ConsumeHandler.ProblemOf(
                Problems.Problem(402, ConsumePolicy.InsufficientTokens, "Not enough purchased tokens.",
                    $"The allowance of '{allowance.Meter}' for this window cannot cover the reservation and the wallet holds {poor.Balance} of the {tokens} tokens it costs.",
                    new Dictionary<string, object?>
                    {
                        ["meter"] = allowance.Meter,
                        ["limit"] = spend?.Limit ?? allowance.Limit,
                        ["resetsAt"] = spend?.Window.End.UtcDateTime,
                        ["upgrade"] = ConsumePolicy.CanUpgrade(catalog, state.EffectivePlan(catalog).Id, allowance.Meter, spend?.Limit ?? allowance.Limit),
                        ["balance"] = poor.Balance,
                        ["requested"] = tokens,
                    }))), poor.Balance, now, cancellationToken),
            _ => await store.DebitedAsync(reservationId, request.UserId, 409, ConsumeHandler.Serialize(ConsumeHandler.ProblemOf(
                Problems.Problem(409, "idempotency_conflict", "The reservation's debit was refused.",
                    "Wallet holds this reservation's key for another debit or has cancelled it; reserve again with a new key."))), 0, now, cancellationToken),
        };
        return ConsumeHandler.Answer(status, answer);
    }

    private MeterAllowance TokenAllowance(string meter) =>
        ConsumePolicy.TokenAllowance(catalog, meter) ?? throw new InvalidOperationException($"No plan pays '{meter}' with tokens.");

    public Task<IResult> CommitAsync(string id, long quantity, CancellationToken cancellationToken) => SettleAsync(id, 0, quantity, cancellationToken);

    public Task<IResult> ReleaseAsync(string id, CancellationToken cancellationToken) => SettleAsync(id, 1, null, cancellationToken);

    private async Task<IResult> SettleAsync(string id, int action, long? quantity, CancellationToken cancellationToken)
    {
        if (!Guid.TryParse(id, out var reservationId))
        {
            return NotFound(id);
        }
        if (await SettleUnderCurrentTermsAsync(reservationId, action, quantity, cancellationToken) is not { } settled)
        {
            return Problems.Problem(503, "busy", "The subscription is changing right now; try again.",
                "Nothing was settled; retry the same request.");
        }
        await returns.ReturnOwedAsync(reservationId, settled, CancellationToken.None);
        return settled.Outcome switch
        {
            "ok" => ConsumeHandler.Answer(200, settled.Answer!),
            "not_found" => NotFound(id),
            "expired" => Problems.Problem(409, "reservation_expired", "The reservation has expired.",
                "It was not committed in time and its quantity went back to the window; reserve again."),
            "released" => Problems.Problem(409, "reservation_released", "The reservation was released.", "A released reservation cannot be committed."),
            "committed" => Problems.Problem(409, "reservation_committed", "The reservation was committed.", "A committed reservation cannot be released."),
            "too_much" => Problems.Validation(new Dictionary<string, string[]> { ["quantity"] = ["At most the reserved quantity."] }),
            var other => throw new InvalidOperationException($"Unexpected settlement {other}"),
        };
    }

    /// <summary>
    /// Settles under the terms the user's plan has now for the reservation's window when that plan bills the meter's
    /// overage or has no limit on it (a commit after an upgrade bills only what passes the new limit, as a consume would);
    /// under the reservation's own terms otherwise — the window has moved on, the plan blocks the meter now (a trial, a
    /// payment past due, a plan without it: units granted as billed overage are still billed), or an unlimited group or a
    /// suspension leaves nothing to decide. Decided again when the subscriber changes meanwhile; null when it kept changing.
    /// </summary>
    private async Task<Settlement?> SettleUnderCurrentTermsAsync(Guid reservationId, int action, long? quantity, CancellationToken cancellationToken)
    {
        var owner = await store.OwnerAsync(reservationId, cancellationToken);
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var now = clock.GetUtcNow();
            SettleTerms? terms = null;
            if (owner is { WindowStart: { } windowStart } o)
            {
                var subscriber = await subscribers.GetAsync(o.UserId, fresh: attempt > 0, cancellationToken);
                var spend = ConsumePolicy.Decide(catalog, subscriber.State, o.Meter, null, now) as ConsumeDecision.Spend;
                var bills = spend is not null && ConsumePolicy.WhenExhausted(spend.Allowance) == ExhaustedAction.Bill;
                terms = spend is not null && spend.Window.Start.UtcDateTime == DateTime.SpecifyKind(windowStart, DateTimeKind.Utc)
                    && (bills || spend.Limit is null)
                        ? new SettleTerms(true, spend.Limit, bills ? spend.Allowance.StripeMeterEventName : null, subscriber.Version)
                        : new SettleTerms(false, null, null, subscriber.Version); // the reservation's own terms, decided on this version
            }
            var settled = await store.SettleAsync(reservationId, action, quantity, now, terms, cancellationToken);
            if (settled.Outcome != "stale")
            {
                return settled;
            }
        }
        logger.LogWarning("The subscriber of reservation {ReservationId} kept changing while it was settled", reservationId);
        return null;
    }

    private static IResult NotFound(string id) =>
        Problems.Problem(404, "reservation_not_found", "No such reservation.", $"There is no reservation '{id}'.");
}

/// <summary>
/// Releases reservations whose time is up, by Billing's clock (they are in PostgreSQL, so none is lost in a restart);
/// sends the token returns Wallet has not confirmed yet; expires token-paid consumes nobody finished.
/// </summary>
public sealed class ReservationSweeper(ReservationStore store, TokenReturns returns, TokenClaimExpiry claims, TimeProvider clock,
    IConfiguration configuration, ILogger<ReservationSweeper> logger) : BackgroundService
{
    /// <summary>
    /// Two loops: releasing expired reservations needs only the database, so it never waits for Wallet — a slow or
    /// unreachable Wallet (returns and claim expiry wait up to its timeout per call) must not keep quota held.
    /// </summary>
    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = TimeSpan.FromMilliseconds(Math.Clamp(configuration.GetValue("Usage:SweepIntervalMs", 1000), 50, 60_000));
        return Task.WhenAll(
            RepeatAsync("Releasing expired reservations", SweepAsync, interval, stoppingToken),
            RepeatAsync("Giving back tokens and expiring token claims", async ct =>
            {
                await returns.ReturnDueAsync(ct);
                await claims.ExpireStaleAsync(ct);
            }, interval, stoppingToken));
    }

    private async Task RepeatAsync(string what, Func<CancellationToken, Task> work, TimeSpan interval, CancellationToken stoppingToken)
    {
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await work(stoppingToken);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogWarning(ex, "{What} failed; trying again shortly", what);
            }
            try
            {
                await Task.Delay(interval, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>
    /// Releases every reservation expired by now; returns how many. A token-backed one's unused tokens are recorded as
    /// owed by the same statement, and the other loop gives them back.
    /// </summary>
    public async Task<int> SweepAsync(CancellationToken cancellationToken)
    {
        var released = 0;
        while (true)
        {
            var now = clock.GetUtcNow();
            var due = await store.ExpiredAsync(now, 500, cancellationToken);
            foreach (var id in due)
            {
                await store.SettleAsync(id, 2, null, now, null, cancellationToken);
                released++;
            }
            if (due.Count < 500)
            {
                return released;
            }
        }
    }
}

/// <summary>
/// Gives a token-backed reservation's unused tokens back to the wallet. The settlement has already recorded the return
/// as due (in the same statement that settled the reservation), so a failure here loses nothing: the sweeper asks again
/// until Wallet confirms, and Wallet returns once per debit however often it is asked.
/// </summary>
public sealed class TokenReturns(ReservationStore store, WalletClient wallet, TimeProvider clock, ILogger<TokenReturns> logger)
{
    private readonly RetryBackoff _backoff = new();

    /// <summary>The Wallet idempotency key of a reservation's debit.</summary>
    public static string KeyOf(Guid reservationId) => "reservation:" + reservationId;

    /// <summary>
    /// Sends the return a settlement owes, if any. Owed in the database already: whatever happens here, the settlement
    /// stands, and the sweeper asks again.
    /// </summary>
    public async Task ReturnOwedAsync(Guid reservationId, Settlement settled, CancellationToken cancellationToken)
    {
        if (settled is { ReturnUser: { } user, ReturnTokens: > 0 and var tokens })
        {
            await TryReturnAsync(new TokenReturn(reservationId, user, tokens), cancellationToken);
        }
    }

    /// <summary>
    /// True when Wallet has confirmed (or there was nothing to give back); false when it must be asked again later (a
    /// failure never escapes: the settlement that owes the return is already saved).
    /// </summary>
    public async Task<bool> TryReturnAsync(TokenReturn due, CancellationToken cancellationToken)
    {
        var key = due.ReservationId.ToString();
        try
        {
            var (answer, balance) = await wallet.ReturnAsync(due.UserId, due.Tokens, KeyOf(due.ReservationId),
                "unused tokens of reservation " + due.ReservationId, cancellationToken);
            if (answer == WalletReturn.Conflict)
            {
                // Cannot happen by construction (one return per reservation, its amount fixed at settlement): kept as owed,
                // asked again with growing pauses, and reported.
                if (_backoff.Failed(key, clock.GetUtcNow()) == 1)
                {
                    logger.LogError("Wallet refused to return {Tokens} tokens of reservation {ReservationId} for {UserId}: it holds another return under the key; check the wallet by hand",
                        due.Tokens, due.ReservationId, due.UserId);
                }
                return false;
            }
            await store.ReturnedAsync(due, balance, clock.GetUtcNow(), cancellationToken);
            _backoff.Done(key);
            return true;
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            _backoff.Failed(key, clock.GetUtcNow());
            logger.LogWarning(ex, "Returning {Tokens} tokens of reservation {ReservationId} failed; the sweeper tries again", due.Tokens, due.ReservationId);
            return false;
        }
    }

    /// <summary>
    /// Asks Wallet again for every return it has not confirmed yet (settled over 2 s ago: a fresh one is still being
    /// sent by its settlement); returns how many it confirmed.
    /// </summary>
    public async Task<int> ReturnDueAsync(CancellationToken cancellationToken)
    {
        var (confirmed, failedInARow) = (0, 0);
        var now = clock.GetUtcNow();
        foreach (var due in await store.ReturnsDueAsync(now.AddSeconds(-2), 200, cancellationToken))
        {
            if (!_backoff.IsDue(due.ReservationId.ToString(), now))
            {
                continue;
            }
            if (await TryReturnAsync(due, cancellationToken))
            {
                (confirmed, failedInARow) = (confirmed + 1, 0);
            }
            else if (++failedInARow == 3)
            {
                break; // Wallet looks down: the rest at the next sweep (one bad return never holds up the others)
            }
        }
        return confirmed;
    }
}
