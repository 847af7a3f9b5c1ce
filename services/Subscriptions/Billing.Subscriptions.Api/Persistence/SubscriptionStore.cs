using Billing.Subscriptions.Core.Subscriptions;
using Dapper;
using Npgsql;

namespace Billing.Subscriptions.Api.Persistence;

/// <summary>SQL for customers, subscriptions and their history.</summary>
public sealed class SubscriptionStore(NpgsqlDataSource dataSource)
{
    private const string Columns =
        """
        subscription_id AS SubscriptionId, user_id AS UserId, customer_id AS CustomerId, plan_id AS PlanId, price_id AS PriceId,
        interval AS Interval, interval_count AS IntervalCount, stripe_status AS StripeStatus,
        current_period_start AS CurrentPeriodStart, current_period_end AS CurrentPeriodEnd, cancel_at_period_end AS CancelAtPeriodEnd,
        trial_end AS TrialEnd, started_at AS StartedAt, ended_at AS EndedAt, ended_reason AS EndedReason,
        past_due_since AS PastDueSince, past_due_sequence AS PastDueSequence, grace_until AS GraceUntil, suspended_at AS SuspendedAt,
        sequence AS Sequence,
        scheduled_plan_id AS ScheduledPlanId, scheduled_price_id AS ScheduledPriceId, scheduled_interval AS ScheduledInterval,
        scheduled_interval_count AS ScheduledIntervalCount, scheduled_at AS ScheduledAt
        """;

    public async Task<string?> FindCustomerAsync(string userId, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        return await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT stripe_customer_id FROM customers WHERE user_id = @userId", new { userId }, cancellationToken: ct));
    }

    /// <summary>Stores the link unless one exists; returns the customer id that is stored (the first one wins).</summary>
    public async Task<string> SaveCustomerAsync(string userId, string customerId, string? email, CancellationToken ct)
    {
        // ON CONFLICT DO UPDATE (a no-op update) waits for a concurrent first checkout's row and returns the committed
        // link; DO NOTHING plus a SELECT in the same statement could not see that row (its snapshot was older: a 500).
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        try
        {
            return await connection.QuerySingleAsync<string>(new CommandDefinition(
                """
                INSERT INTO customers AS c (user_id, stripe_customer_id, email) VALUES (@userId, @customerId, @email)
                ON CONFLICT (user_id) DO UPDATE SET stripe_customer_id = c.stripe_customer_id
                RETURNING c.stripe_customer_id
                """, new { userId, customerId, email }, cancellationToken: ct));
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation && ex.ConstraintName == "ux_customers_stripe_customer_id")
        {
            // The concurrent first checkout inserted the same customer (Stripe answered both under one idempotency key)
            // and its row reached the unique index on the customer id first: ON CONFLICT (user_id) only arbitrates
            // the primary key. That row is committed now (the violation waited for it), so a new statement sees it.
            return await FindCustomerAsync(userId, ct) ?? throw new InvalidOperationException(
                $"Stripe customer {customerId} is linked to another user than {userId}.", ex);
        }
    }

    /// <summary>The user's current subscription: a live one if any, else the latest that ended.</summary>
    public async Task<SubscriptionRecord?> CurrentAsync(string userId, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        return await connection.QueryFirstOrDefaultAsync<SubscriptionRecord>(new CommandDefinition(
            $"""
            SELECT {Columns} FROM subscriptions WHERE user_id = @userId
            ORDER BY (stripe_status IN ('trialing','active','past_due','unpaid','paused')) DESC, started_at DESC
            LIMIT 1
            """, new { userId }, cancellationToken: ct));
    }

    /// <summary>True when any subscription of the user was ever stored, in any status.</summary>
    public async Task<bool> HadSubscriptionAsync(string userId, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE user_id = @userId)", new { userId }, cancellationToken: ct));
    }

    /// <summary>
    /// The stored subscription, locked until <paramref name="tx"/> ends — also when there is none yet: the id is locked
    /// first (an advisory lock), and read after, in a statement of its own. A row lock alone locks nothing before the first
    /// insert, so two first messages of a subscription (its activation and its end, queued during an outage or consumed
    /// by two replicas) both read "none" and the older overwrote the newer at the insert.
    /// </summary>
    public static async Task<SubscriptionRecord?> GetForUpdateAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string subscriptionId, CancellationToken ct)
    {
        await connection.ExecuteAsync(new CommandDefinition(
            "SELECT pg_advisory_xact_lock(hashtextextended('subscription|' || @subscriptionId, 0))", new { subscriptionId }, tx, cancellationToken: ct));
        return await connection.QuerySingleOrDefaultAsync<SubscriptionRecord>(new CommandDefinition(
            $"SELECT {Columns} FROM subscriptions WHERE subscription_id = @subscriptionId FOR UPDATE",
            new { subscriptionId }, tx, cancellationToken: ct));
    }

    /// <summary>
    /// Locks the user's checkout row (created if missing) until <paramref name="tx"/> ends, so that one user's checkouts run
    /// one at a time; returns the latest session, its idempotency key, when it was made and the current generation.
    /// </summary>
    public static async Task<OpenCheckout> LockCheckoutAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string userId, CancellationToken ct)
    {
        await connection.ExecuteAsync(new CommandDefinition(
            "INSERT INTO subscription_checkouts (user_id) VALUES (@userId) ON CONFLICT (user_id) DO NOTHING", new { userId }, tx, cancellationToken: ct));
        return await connection.QuerySingleAsync<OpenCheckout>(new CommandDefinition(
            """
            SELECT session_id AS SessionId, idempotency_key AS IdempotencyKey, generation AS Generation, session_created_at AS CreatedAt
            FROM subscription_checkouts WHERE user_id = @userId FOR UPDATE
            """, new { userId }, tx, cancellationToken: ct));
    }

    /// <summary>
    /// Records the user's latest session (made at <paramref name="createdAt"/> under <paramref name="idempotencyKey"/>), or —
    /// all three null — that there is none to hand out and the next one must be made in <paramref name="generation"/>.
    /// </summary>
    public static Task SaveCheckoutAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string userId, string? sessionId, string? idempotencyKey,
        DateTimeOffset? createdAt, int generation, CancellationToken ct) =>
        connection.ExecuteAsync(new CommandDefinition(
            """
            UPDATE subscription_checkouts SET session_id = @sessionId, idempotency_key = @idempotencyKey, session_created_at = @createdAt,
                generation = @generation, updated_at = now()
            WHERE user_id = @userId
            """, new { userId, sessionId, idempotencyKey, createdAt = createdAt?.UtcDateTime, generation }, tx, cancellationToken: ct));

    public static Task UpsertAsync(NpgsqlConnection connection, NpgsqlTransaction tx, SubscriptionRecord s, CancellationToken ct) =>
        connection.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO subscriptions (subscription_id, user_id, customer_id, plan_id, price_id, interval, interval_count, stripe_status,
                current_period_start, current_period_end, cancel_at_period_end, trial_end, started_at, ended_at, ended_reason,
                past_due_since, past_due_sequence, grace_until, suspended_at, sequence, scheduled_plan_id, scheduled_price_id,
                scheduled_interval, scheduled_interval_count, scheduled_at, updated_at)
            VALUES (@SubscriptionId, @UserId, @CustomerId, @PlanId, @PriceId, @Interval, @IntervalCount, @StripeStatus,
                @CurrentPeriodStart, @CurrentPeriodEnd, @CancelAtPeriodEnd, @TrialEnd, @StartedAt, @EndedAt, @EndedReason,
                @PastDueSince, @PastDueSequence, @GraceUntil, @SuspendedAt, @Sequence, @ScheduledPlanId, @ScheduledPriceId,
                @ScheduledInterval, @ScheduledIntervalCount, @ScheduledAt, now())
            ON CONFLICT (subscription_id) DO UPDATE SET
                user_id = EXCLUDED.user_id, customer_id = EXCLUDED.customer_id, plan_id = EXCLUDED.plan_id, price_id = EXCLUDED.price_id,
                interval = EXCLUDED.interval, interval_count = EXCLUDED.interval_count, stripe_status = EXCLUDED.stripe_status,
                current_period_start = EXCLUDED.current_period_start, current_period_end = EXCLUDED.current_period_end,
                cancel_at_period_end = EXCLUDED.cancel_at_period_end, trial_end = EXCLUDED.trial_end, started_at = EXCLUDED.started_at,
                ended_at = EXCLUDED.ended_at, ended_reason = EXCLUDED.ended_reason, past_due_since = EXCLUDED.past_due_since,
                past_due_sequence = EXCLUDED.past_due_sequence,
                grace_until = EXCLUDED.grace_until, suspended_at = EXCLUDED.suspended_at, sequence = EXCLUDED.sequence,
                scheduled_plan_id = EXCLUDED.scheduled_plan_id, scheduled_price_id = EXCLUDED.scheduled_price_id,
                scheduled_interval = EXCLUDED.scheduled_interval, scheduled_interval_count = EXCLUDED.scheduled_interval_count,
                scheduled_at = EXCLUDED.scheduled_at, updated_at = now()
            """, s, tx, cancellationToken: ct));

    public static Task RecordAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string userId, string subscriptionId, string change,
        string detail, string causedBy, string? stripeEventId, DateTimeOffset occurredAt, CancellationToken ct) =>
        connection.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO subscription_history (user_id, subscription_id, change, detail, caused_by, stripe_event_id, occurred_at)
            VALUES (@userId, @subscriptionId, @change, @detail, @causedBy, @stripeEventId, @occurredAt)
            """, new { userId, subscriptionId, change, detail, causedBy, stripeEventId, occurredAt }, tx, cancellationToken: ct));

    /// <summary>Audits what a user asked for (the effect follows from Stripe's events).</summary>
    public async Task RecordUserActionAsync(string userId, string subscriptionId, string change, string detail, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        await RecordAsync(connection, tx, userId, subscriptionId, change, detail, "user", null, DateTimeOffset.UtcNow, ct);
        await tx.CommitAsync(ct);
    }

    public async Task<IReadOnlyList<HistoryEntry>> HistoryAsync(string userId, int limit, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        return (await connection.QueryAsync<HistoryEntry>(new CommandDefinition(
            """
            SELECT id AS Id, subscription_id AS SubscriptionId, change AS Change, detail AS Detail, caused_by AS CausedBy,
                   stripe_event_id AS StripeEventId, occurred_at AS OccurredAt
            FROM subscription_history WHERE user_id = @userId ORDER BY id DESC LIMIT @limit
            """, new { userId, limit }, cancellationToken: ct))).ToList();
    }
}

/// <summary>
/// The user's latest subscription checkout session (null before the first), its key, the generation the next key is made
/// in, and when the session was made (null for one made before Subscriptions' migration 0005).
/// </summary>
public sealed record OpenCheckout(string? SessionId, string? IdempotencyKey, int Generation, DateTime? CreatedAt);

/// <summary>One audited change of a user's subscription.</summary>
public sealed record HistoryEntry(long Id, string SubscriptionId, string Change, string Detail, string CausedBy, string? StripeEventId, DateTimeOffset OccurredAt);
