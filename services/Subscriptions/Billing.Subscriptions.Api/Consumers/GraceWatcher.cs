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

    public async Task<int> SuspendExpiredAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var due = (await connection.QueryAsync<(string SubscriptionId, string UserId, string PlanId, DateTime PastDueSince, DateTime GraceUntil)>(new CommandDefinition(
            """
            SELECT subscription_id, user_id, plan_id, past_due_since, grace_until FROM subscriptions
            WHERE suspended_at IS NULL AND grace_until IS NOT NULL AND grace_until <= @now
              AND stripe_status IN ('past_due', 'unpaid', 'paused')
            ORDER BY grace_until LIMIT 100 FOR UPDATE SKIP LOCKED
            """, new { now }, tx, cancellationToken: ct))).ToList();
        var suspended = 0;
        foreach (var s in due)
        {
            string? stripeStatus;
            try
            {
                stripeStatus = (await calls.RunAsync(c => new SubscriptionService(stripe).GetAsync(s.SubscriptionId, cancellationToken: c), ct)).Status;
            }
            catch (StripeUnavailableException ex)
            {
                // Cannot tell whether it was paid: suspend nobody now (the rows stay due) and try again at the next tick.
                logger.LogWarning(ex, "Grace check could not re-read subscription {SubscriptionId} from Stripe; retrying later", s.SubscriptionId);
                break;
            }
            catch (StripeException ex)
            {
                logger.LogWarning(ex, "Stripe did not return subscription {SubscriptionId}; suspending on the stored state", s.SubscriptionId);
                stripeStatus = null;
            }
            if (stripeStatus is "active" or "trialing")
            {
                // Paid after all; the events saying so are on their way. Store what Stripe says now (a later event with a
                // higher sequence still replaces the row) so that the watcher does not ask again.
                await connection.ExecuteAsync(new CommandDefinition(
                    """
                    UPDATE subscriptions SET stripe_status = @stripeStatus, past_due_since = NULL, grace_until = NULL, updated_at = now()
                    WHERE subscription_id = @id
                    """, new { stripeStatus, id = s.SubscriptionId }, tx, cancellationToken: ct));
                await SubscriptionStore.RecordAsync(connection, tx, s.UserId, s.SubscriptionId, "grace_cleared",
                    $"grace ended {s.GraceUntil:u}, but Stripe says {stripeStatus}: not suspended", "system", null, now, ct);
                continue;
            }

            await connection.ExecuteAsync(new CommandDefinition(
                "UPDATE subscriptions SET suspended_at = @now, updated_at = now() WHERE subscription_id = @id",
                new { now, id = s.SubscriptionId }, tx, cancellationToken: ct));
            var pastDueSince = new DateTimeOffset(s.PastDueSince, TimeSpan.Zero);
            var graceUntil = new DateTimeOffset(s.GraceUntil, TimeSpan.Zero);
            await Outbox.EnqueueAsync(connection, tx, new SubscriptionAccessSuspended
            {
                UserId = s.UserId, SubscriptionId = s.SubscriptionId, PlanId = s.PlanId,
                PastDueSince = pastDueSince, GraceUntil = graceUntil, OccurredAt = now,
            }, Outbox.MessageId($"{s.SubscriptionId}|{pastDueSince:O}", nameof(SubscriptionAccessSuspended)), ct);
            await SubscriptionStore.RecordAsync(connection, tx, s.UserId, s.SubscriptionId, "access_suspended",
                $"past due since {pastDueSince:u}; grace ended {graceUntil:u}", "system", null, now, ct);
            suspended++;
        }
        await tx.CommitAsync(ct);
        return suspended;
    }
}
