using Billing.Contracts;
using Billing.ServiceDefaults.Messaging;
using Billing.ServiceDefaults.Stripe;
using Billing.Subscriptions.Api.Persistence;
using Dapper;
using Npgsql;
using Stripe;

namespace Billing.Subscriptions.Api.Consumers;

/// <summary>
/// Suspends access when a past-due subscription's grace period is over: marks it and publishes
/// <see cref="SubscriptionAccessSuspended"/> through the outbox, once. A later payment restores access.
/// Before it suspends it re-reads the subscription from Stripe (ARCHITECTURE.md rule 3): a payment made just before the
/// grace end whose events have not arrived yet must not cost the user a period of access.
/// </summary>
public sealed class GraceWatcher(NpgsqlDataSource dataSource, IStripeClient stripe, StripeCalls calls, TimeProvider clock, ILogger<GraceWatcher> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(2));
        do
        {
            try
            {
                await SuspendExpiredAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException)
            {
                logger.LogWarning(ex, "Grace check failed; retrying");
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    private const string Due =
        "suspended_at IS NULL AND grace_until IS NOT NULL AND grace_until <= @now AND stripe_status IN ('past_due', 'unpaid', 'paused')";

    public async Task<int> SuspendExpiredAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        List<string> due;
        await using (var connection = await dataSource.OpenConnectionAsync(ct))
        {
            due = (await connection.QueryAsync<string>(new CommandDefinition(
                $"SELECT subscription_id FROM subscriptions WHERE {Due} ORDER BY grace_until LIMIT 100", new { now }, cancellationToken: ct))).ToList();
        }
        var suspended = 0;
        foreach (var id in due)
        {
            // Stripe first, outside any transaction (no row stays locked while Stripe answers, so the lifecycle consumer
            // never waits for it); the row is then locked briefly and checked again, as an event may have moved it meanwhile.
            string? stripeStatus;
            try
            {
                stripeStatus = (await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(id, cancellationToken: c), ct)).Status;
            }
            catch (StripeUnavailableException ex)
            {
                // Cannot tell whether it was paid: suspend nobody now (the rows stay due) and try again at the next tick.
                logger.LogWarning(ex, "Grace check could not re-read subscription {SubscriptionId} from Stripe; retrying later", id);
                break;
            }
            catch (StripeException ex)
            {
                logger.LogWarning(ex, "Stripe did not return subscription {SubscriptionId}; suspending on the stored state", id);
                stripeStatus = null;
            }
            if (await SettleAsync(id, stripeStatus, now, ct))
            {
                suspended++;
            }
        }
        return suspended;
    }

    /// <summary>Suspends the subscription if it is still due and Stripe does not say it is paid; true when it suspended.</summary>
    private async Task<bool> SettleAsync(string id, string? stripeStatus, DateTimeOffset now, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var row = await connection.QuerySingleOrDefaultAsync<(string SubscriptionId, string UserId, string PlanId, DateTime PastDueSince, DateTime GraceUntil,
            long? PastDueSequence)?>(
            new CommandDefinition(
                $"SELECT subscription_id, user_id, plan_id, past_due_since, grace_until, past_due_sequence FROM subscriptions WHERE subscription_id = @id AND {Due} FOR UPDATE SKIP LOCKED",
                new { id, now }, tx, cancellationToken: ct));
        if (row is not { } s)
        {
            return false; // no longer due, or an event is changing it right now (the next tick looks again)
        }
        if (stripeStatus is "active" or "trialing")
        {
            // Paid after all; the events saying so are on their way. Store what Stripe says now (a later event with a
            // higher sequence still replaces the row) so that the watcher does not ask again.
            await connection.ExecuteAsync(new CommandDefinition(
                """
                UPDATE subscriptions SET stripe_status = @stripeStatus, past_due_since = NULL, past_due_sequence = NULL, grace_until = NULL, updated_at = now()
                WHERE subscription_id = @id
                """, new { stripeStatus, id }, tx, cancellationToken: ct));
            await SubscriptionStore.RecordAsync(connection, tx, s.UserId, id, "grace_cleared",
                $"grace ended {s.GraceUntil:u}, but Stripe says {stripeStatus}: not suspended", "system", null, now, ct);
            await tx.CommitAsync(ct);
            return false;
        }

        await connection.ExecuteAsync(new CommandDefinition(
            "UPDATE subscriptions SET suspended_at = @now, updated_at = now() WHERE subscription_id = @id",
            new { now, id }, tx, cancellationToken: ct));
        var pastDueSince = new DateTimeOffset(s.PastDueSince, TimeSpan.Zero);
        var graceUntil = new DateTimeOffset(s.GraceUntil, TimeSpan.Zero);
        await Outbox.EnqueueAsync(connection, tx, new SubscriptionAccessSuspended
        {
            UserId = s.UserId, SubscriptionId = id, PlanId = s.PlanId,
            PastDueSince = pastDueSince, PastDueSequence = s.PastDueSequence, GraceUntil = graceUntil, OccurredAt = now,
        }, Outbox.MessageId($"{id}|{pastDueSince:O}", nameof(SubscriptionAccessSuspended)), ct);
        await SubscriptionStore.RecordAsync(connection, tx, s.UserId, id, "access_suspended",
            $"past due since {pastDueSince:u}; grace ended {graceUntil:u}", "system", null, now, ct);
        await tx.CommitAsync(ct);
        return true;
    }
}
