using Billing.Payments.Core.Webhooks;
using Dapper;
using Npgsql;

namespace Billing.Payments.Api.Persistence;

/// <summary>The webhook inbox: Stripe's events, unique on Stripe's event id, with their processing state.</summary>
public sealed class EventStore(NpgsqlDataSource dataSource)
{
    public const string Channel = "billing_stripe_events";

    /// <summary>Stores the event once; returns false when it was there already (a duplicate delivery).</summary>
    public async Task<bool> StoreAsync(StripeEventEnvelope e, string payload, string source, CancellationToken ct)
    {
        var handled = StripeEventTypes.Handled.Contains(e.Type);
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        // One round trip: insert, and wake the processors when it is new. NOTIFY is delivered on commit.
        var inserted = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            $"""
            WITH inserted AS (
                INSERT INTO stripe_events (id, type, api_version, livemode, stripe_created, object_type, object_id, order_key, payload, source, status, processed_at)
                VALUES (@Id, @Type, @ApiVersion, @Livemode, @Created, @ObjectType, @ObjectId, @OrderKey, @payload, @source, @status,
                        CASE WHEN @handled THEN NULL ELSE now() END)
                ON CONFLICT (id) DO NOTHING
                RETURNING 1),
            notified AS (SELECT pg_notify('{Channel}', '') FROM inserted WHERE @handled)
            SELECT EXISTS (SELECT 1 FROM inserted), (SELECT count(*) FROM notified)
            """,
            new { e.Id, e.Type, e.ApiVersion, e.Livemode, e.Created, e.ObjectType, e.ObjectId, e.OrderKey, payload, source, handled, status = handled ? "pending" : "ignored" },
            cancellationToken: ct));
        return inserted;
    }

    /// <summary>
    /// Puts back in the queue the events stored as ignored within <paramref name="window"/> whose type is handled now. During
    /// a rollout that teaches Payments a new event type, a replica of the older release stores that type as ignored (and
    /// Stripe's redelivery of it is then a duplicate, the reconciler's copy too): the newer release, once it runs, takes
    /// them up. Returns how many.
    /// </summary>
    public async Task<int> RequeueNewlyHandledAsync(TimeSpan window, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        var requeued = await connection.ExecuteAsync(new CommandDefinition(
            """
            UPDATE stripe_events SET status = 'pending', processed_at = NULL, next_attempt_at = now()
            WHERE status = 'ignored' AND received_at > now() - @window AND type = ANY(@types)
            """, new { window, types = StripeEventTypes.Handled.ToArray() }, cancellationToken: ct));
        if (requeued > 0)
        {
            await connection.ExecuteAsync(new CommandDefinition($"SELECT pg_notify('{Channel}', '')", cancellationToken: ct));
        }
        return requeued;
    }

    /// <summary>Events due for processing, oldest first.</summary>
    public async Task<IReadOnlyList<(string Id, string OrderKey)>> DueAsync(int limit, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        return (await connection.QueryAsync<(string, string)>(new CommandDefinition(
            """
            SELECT id, order_key FROM stripe_events
            WHERE status = 'pending' AND next_attempt_at <= now()
            ORDER BY stripe_created, received_at LIMIT @limit
            """, new { limit }, cancellationToken: ct))).ToList();
    }

    public async Task<IReadOnlyList<WebhookEventRow>> ListAsync(string? status, int limit, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        return (await connection.QueryAsync<WebhookEventRow>(new CommandDefinition(
            """
            SELECT id AS Id, type AS Type, status AS Status, source AS Source, object_id AS ObjectId, attempts AS Attempts,
                   last_error AS LastError, stripe_created AS StripeCreated, received_at AS ReceivedAt, processed_at AS ProcessedAt
            FROM stripe_events WHERE (@status::text IS NULL OR status = @status)
            ORDER BY received_at DESC LIMIT @limit
            """, new { status, limit }, cancellationToken: ct))).ToList();
    }

    /// <summary>Puts a failed (or any) event back in the queue; returns false when there is no such event.</summary>
    public async Task<bool> ReplayAsync(string id, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        var updated = await connection.ExecuteAsync(new CommandDefinition(
            """
            UPDATE stripe_events SET status = 'pending', attempts = 0, failures = 0, next_attempt_at = now(), last_error = NULL, source = 'replay'
            WHERE id = @id
            """, new { id }, cancellationToken: ct));
        if (updated > 0)
        {
            await connection.ExecuteAsync(new CommandDefinition($"SELECT pg_notify('{Channel}', '')", cancellationToken: ct));
        }
        return updated > 0;
    }
}

/// <summary>One stored Stripe event, as the admin endpoints list it.</summary>
public sealed record WebhookEventRow(string Id, string Type, string Status, string Source, string? ObjectId, int Attempts, string? LastError,
    DateTimeOffset StripeCreated, DateTimeOffset ReceivedAt, DateTimeOffset? ProcessedAt);
