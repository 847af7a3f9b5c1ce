using Billing.Catalog;
using Billing.Usage.Api.Spending;
using Billing.Usage.Core.Subscribers;
using Dapper;
using Npgsql;

namespace Billing.Usage.Api.Persistence;

/// <summary>The <c>usage_subjects</c> and <c>usage_subscriptions</c> tables: who is on which plan, since when.</summary>
public sealed class SubscriberStore(NpgsqlDataSource dataSource, BillingCatalog catalog)
{
    internal const string Columns =
        """
        s.user_id AS UserId, s.plan_id AS PlanId, s.subscription_id AS SubscriptionId, s.stripe_status AS Status,
        s.access AS Access, s.anchor AS Anchor, s.period_start AS PeriodStart, s.period_end AS PeriodEnd,
        s.last_sequence AS Sequence, s.status_occurred_at AS StatusOccurredAt, s.suspended_at AS SuspendedAt, s.recovered_sequence AS RecoveredSequence, s.suspended_sequence AS SuspendedSequence, s.paid_at AS PaidAt, s.groups AS Groups
        """;

    /// <summary>The subscriber's state; a user nobody told us about is on the free plan.</summary>
    public async Task<SubscriberState> GetAsync(string userId, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<SubscriberRow>(new CommandDefinition(
            $"SELECT {Columns} FROM usage_subjects s WHERE s.user_id = @userId", new { userId }, cancellationToken: cancellationToken));
        return row?.ToState() ?? SubscriberState.New(userId, catalog);
    }

    /// <summary>The subscriber's state and its row's version (-1 when there is no row: the free plan).</summary>
    public async Task<VersionedSubscriber> GetVersionedAsync(string userId, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<SubscriberRow>(new CommandDefinition(
            $"SELECT {Columns}, s.version AS Version FROM usage_subjects s WHERE s.user_id = @userId", new { userId }, cancellationToken: cancellationToken));
        return row is null ? new VersionedSubscriber(SubscriberState.New(userId, catalog), -1) : new VersionedSubscriber(row.ToState(), row.Version);
    }

    /// <summary>Remembers the Stripe customer of the user's subscription (billed overage is reported for it).</summary>
    public Task RememberCustomerAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string userId, string customerId,
        DateTimeOffset now, CancellationToken cancellationToken) =>
        connection.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO usage_subjects AS s (user_id, plan_id, stripe_customer_id, updated_at) VALUES (@userId, @plan, @customerId, @now)
            ON CONFLICT (user_id) DO UPDATE SET stripe_customer_id = EXCLUDED.stripe_customer_id, updated_at = EXCLUDED.updated_at
            WHERE s.stripe_customer_id IS DISTINCT FROM EXCLUDED.stripe_customer_id
            """,
            new { userId, plan = catalog.FreePlan, customerId, now = now.ToUniversalTime() }, transaction, cancellationToken: cancellationToken));

    /// <summary>Reads and locks the subscriber's row inside a consumer's transaction, creating it when missing.</summary>
    public async Task<SubscriberState> LockAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string userId, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        await connection.ExecuteAsync(new CommandDefinition(
            "INSERT INTO usage_subjects (user_id, plan_id, updated_at) VALUES (@userId, @plan, @now) ON CONFLICT (user_id) DO NOTHING",
            new { userId, plan = catalog.FreePlan, now }, transaction, cancellationToken: cancellationToken));
        var row = await connection.QuerySingleAsync<SubscriberRow>(new CommandDefinition(
            $"SELECT {Columns} FROM usage_subjects s WHERE s.user_id = @userId FOR UPDATE", new { userId }, transaction, cancellationToken: cancellationToken));
        return row.ToState();
    }

    /// <summary>What is used of <paramref name="meter"/> in the window starting at <paramref name="windowStart"/> (0 when nothing).</summary>
    public async Task<long> UsedAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string userId, string meter,
        DateTimeOffset windowStart, CancellationToken cancellationToken) =>
        await connection.ExecuteScalarAsync<long?>(new CommandDefinition(
            "SELECT used FROM usage_counters WHERE user_id = @userId AND meter = @meter AND window_start = @windowStart",
            new { userId, meter, windowStart = windowStart.ToUniversalTime() }, transaction, cancellationToken: cancellationToken)) ?? 0;

    public Task SaveAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, SubscriberState state, DateTimeOffset now,
        CancellationToken cancellationToken) =>
        connection.ExecuteAsync(new CommandDefinition(
            """
            UPDATE usage_subjects SET plan_id = @PlanId, subscription_id = @SubscriptionId, stripe_status = @Status, access = @Access,
                anchor = @Anchor, period_start = @PeriodStart, period_end = @PeriodEnd, last_sequence = @Sequence,
                status_occurred_at = @StatusOccurredAt, suspended_at = @SuspendedAt, recovered_sequence = @RecoveredSequence, suspended_sequence = @SuspendedSequence, paid_at = @PaidAt, updated_at = @Now
            WHERE user_id = @UserId
            """,
            new
            {
                state.UserId,
                state.PlanId,
                state.SubscriptionId,
                state.Status,
                Access = state.Access.ToName(),
                Anchor = Utc(state.Anchor),
                PeriodStart = Utc(state.PeriodStart),
                PeriodEnd = Utc(state.PeriodEnd),
                state.Sequence,
                StatusOccurredAt = Utc(state.StatusOccurredAt),
                SuspendedAt = Utc(state.SuspendedAt),
                state.RecoveredSequence,
                state.SuspendedSequence,
                PaidAt = Utc(state.PaidAt),
                Now = now.ToUniversalTime(),
            },
            transaction, cancellationToken: cancellationToken));

    /// <summary>
    /// Records <paramref name="sequence"/> as the last one applied for the subscription when it is newer than the stored
    /// one. Returns false for a stale or duplicate message, which must then change nothing.
    /// </summary>
    public async Task<bool> AdvanceSequenceAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string subscriptionId, string userId,
        long sequence, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var rows = await connection.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO usage_subscriptions AS s (subscription_id, user_id, last_sequence, updated_at)
            VALUES (@subscriptionId, @userId, @sequence, @now)
            ON CONFLICT (subscription_id) DO UPDATE SET last_sequence = EXCLUDED.last_sequence, updated_at = EXCLUDED.updated_at
            WHERE s.last_sequence < EXCLUDED.last_sequence
            """,
            new { subscriptionId, userId, sequence, now = now.ToUniversalTime() }, transaction, cancellationToken: cancellationToken));
        return rows > 0;
    }

    /// <summary>Remembers the groups of the user's own token (only writes when they changed).</summary>
    public async Task RememberGroupsAsync(string userId, IReadOnlyList<string> groups, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO usage_subjects AS s (user_id, plan_id, groups, updated_at) VALUES (@userId, @plan, @groups, @now)
            ON CONFLICT (user_id) DO UPDATE SET groups = EXCLUDED.groups, updated_at = EXCLUDED.updated_at
            WHERE s.groups IS DISTINCT FROM EXCLUDED.groups
            """,
            new { userId, plan = catalog.FreePlan, groups = groups.Order(StringComparer.Ordinal).ToArray(), now = now.ToUniversalTime() },
            cancellationToken: cancellationToken));
    }

    private static DateTimeOffset? Utc(DateTimeOffset? value) => value?.ToUniversalTime();
}

/// <summary>A <c>usage_subjects</c> row as Dapper reads it.</summary>
internal sealed class SubscriberRow
{
    public string UserId { get; set; } = "";
    public string PlanId { get; set; } = "";
    public string? SubscriptionId { get; set; }
    public string? Status { get; set; }
    public string Access { get; set; } = "none";
    public DateTime? Anchor { get; set; }
    public DateTime? PeriodStart { get; set; }
    public DateTime? PeriodEnd { get; set; }
    public long Sequence { get; set; }
    public DateTime? StatusOccurredAt { get; set; }
    public DateTime? SuspendedAt { get; set; }
    public long? RecoveredSequence { get; set; }
    public long? SuspendedSequence { get; set; }
    public DateTime? PaidAt { get; set; }
    public string[] Groups { get; set; } = [];
    public long Version { get; set; }

    public SubscriberState ToState() => new()
    {
        UserId = UserId,
        PlanId = PlanId,
        SubscriptionId = SubscriptionId,
        Status = Status,
        Access = SubscriberAccessNames.Parse(Access),
        Anchor = Utc(Anchor),
        PeriodStart = Utc(PeriodStart),
        PeriodEnd = Utc(PeriodEnd),
        Sequence = Sequence,
        StatusOccurredAt = Utc(StatusOccurredAt),
        SuspendedAt = Utc(SuspendedAt),
        RecoveredSequence = RecoveredSequence,
        SuspendedSequence = SuspendedSequence,
        PaidAt = Utc(PaidAt),
        Groups = Groups,
    };

    internal static DateTimeOffset? Utc(DateTime? value) =>
        value is { } v ? new DateTimeOffset(DateTime.SpecifyKind(v, DateTimeKind.Utc), TimeSpan.Zero) : null;
}
