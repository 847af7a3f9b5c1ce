using Billing.Catalog;
using Billing.ServiceDefaults;
using Billing.Usage.Api.Consuming;
using Billing.Usage.Api.Persistence;
using Billing.Usage.Api.Spending;
using Billing.Usage.Core.Consuming;
using Billing.Usage.Core.Reservations;

namespace Billing.Usage.Api.Reservations;

/// <summary>
/// Reservations for streaming calls: reserve (counts against the window at once, atomically, like a consume) → commit
/// the amount actually used (the rest goes back) or release. An expired reservation is released by the
/// <see cref="ReservationSweeper"/>. Everything is in PostgreSQL, so a restart loses nothing. Token-backed reservations
/// are not offered: Wallet has no API to credit a debit back, so a <c>tokens</c> meter reserves from the window only.
/// </summary>
public sealed class ReservationHandler(SubscriberCache subscribers, ReservationStore store, BillingCatalog catalog, TimeProvider clock,
    ILogger<ReservationHandler> logger)
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
                    Refusal = ConsumeHandler.Serialize(ConsumeHandler.ProblemOf(Problems.Problem(402, ConsumePolicy.QuotaExhausted,
                        "The quota cannot cover the reservation.",
                        $"What is left of '{spend.Allowance.Meter}' in this window is less than the reservation (reservations are covered by the window only).",
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

            var result = await store.ReserveAsync(command, cancellationToken);
            switch (result.Outcome)
            {
                case SpendOutcome.Answered:
                    return ConsumeHandler.Answer(result.StatusCode, result.Answer!);
                case SpendOutcome.Stored:
                    return result.StoredUser != request.UserId || result.StoredMeter != request.Meter || result.StoredQuantity != request.Quantity
                        ? Problems.Problem(409, "idempotency_conflict", "The idempotency key was used for another reservation.",
                            "A reservation with this idempotency key had a different userId, meter or quantity; use a new key.")
                        : ConsumeHandler.Answer(result.StatusCode, result.Answer!);
            }
        }
        logger.LogWarning("The subscriber {UserId} kept changing during a reservation", request.UserId);
        return Problems.Problem(503, "busy", "The subscription is changing right now; try again.", "Nothing was reserved; retry with the same idempotency key.");
    }

    public Task<IResult> CommitAsync(string id, long quantity, CancellationToken cancellationToken) => SettleAsync(id, 0, quantity, cancellationToken);

    public Task<IResult> ReleaseAsync(string id, CancellationToken cancellationToken) => SettleAsync(id, 1, null, cancellationToken);

    private async Task<IResult> SettleAsync(string id, int action, long? quantity, CancellationToken cancellationToken)
    {
        if (!Guid.TryParse(id, out var reservationId))
        {
            return NotFound(id);
        }
        var settled = await store.SettleAsync(reservationId, action, quantity, clock.GetUtcNow(), cancellationToken);
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

    private static IResult NotFound(string id) =>
        Problems.Problem(404, "reservation_not_found", "No such reservation.", $"There is no reservation '{id}'.");
}

/// <summary>Releases reservations whose time is up, by Billing's clock; they are in PostgreSQL, so none is lost in a restart.</summary>
public sealed class ReservationSweeper(ReservationStore store, TimeProvider clock, IConfiguration configuration, ILogger<ReservationSweeper> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = TimeSpan.FromMilliseconds(Math.Clamp(configuration.GetValue("Usage:SweepIntervalMs", 1000), 50, 60_000));
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await SweepAsync(stoppingToken);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogWarning(ex, "Releasing expired reservations failed; trying again shortly");
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

    /// <summary>Releases every reservation expired by now; returns how many.</summary>
    public async Task<int> SweepAsync(CancellationToken cancellationToken)
    {
        var released = 0;
        while (true)
        {
            var now = clock.GetUtcNow();
            var due = await store.ExpiredAsync(now, 500, cancellationToken);
            foreach (var id in due)
            {
                await store.SettleAsync(id, 2, null, now, cancellationToken);
                released++;
            }
            if (due.Count < 500)
            {
                return released;
            }
        }
    }
}
