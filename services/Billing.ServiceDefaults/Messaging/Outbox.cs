using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Dapper;
using Npgsql;

namespace Billing.ServiceDefaults.Messaging;

/// <summary>
/// Writes an outgoing integration event into the service's <c>outbox</c> table inside the caller's transaction
/// (ARCHITECTURE.md rule 2). Nothing reaches RabbitMQ unless the state change commits; the relay publishes it later,
/// with the row's id as MessageId, so consumers can de-duplicate.
/// </summary>
public static class Outbox
{
    /// <summary>The channel the relay listens on; NOTIFY is delivered only when the writer's transaction commits.</summary>
    public const string Channel = "billing_outbox";

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>
    /// Adds <paramref name="message"/> to the outbox. With a deterministic <paramref name="messageId"/> (see
    /// <see cref="MessageId"/>) enqueuing the same message twice is a no-op. Returns false when it was already there.
    /// </summary>
    public static Task<bool> EnqueueAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction, T message,
        Guid? messageId = null, CancellationToken cancellationToken = default) where T : class =>
        EnqueueObjectAsync(connection, transaction, message, messageId, cancellationToken);

    /// <summary>The same, for a message whose type is known only at run time (its run-time type is published).</summary>
    public static async Task<bool> EnqueueObjectAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, object message,
        Guid? messageId = null, CancellationToken cancellationToken = default)
    {
        var type = message.GetType();
        var rows = await connection.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO outbox (id, message_type, payload, trace_parent, correlation_id)
            VALUES (@Id, @Type, CAST(@Payload AS jsonb), @TraceParent, @CorrelationId)
            ON CONFLICT (id) DO NOTHING;
            """,
            new
            {
                Id = messageId ?? Guid.CreateVersion7(),
                Type = $"{type.FullName}, {type.Assembly.GetName().Name}",
                Payload = JsonSerializer.Serialize(message, type, Json),
                TraceParent = Activity.Current?.Id,
                CorrelationId = CorrelationId.Current,
            },
            transaction, cancellationToken: cancellationToken));
        if (rows > 0)
        {
            await connection.ExecuteAsync(new CommandDefinition($"SELECT pg_notify('{Channel}', '')", transaction: transaction, cancellationToken: cancellationToken));
        }
        return rows > 0;
    }

    /// <summary>
    /// A message id derived from what caused the message (e.g. a Stripe event id and the message type), so that
    /// processing the same cause twice produces the same id and the message at most once.
    /// </summary>
    public static Guid MessageId(string cause, string kind)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(cause + "\n" + kind));
        var bytes = hash.AsSpan(0, 16).ToArray();
        bytes[7] = (byte)((bytes[7] & 0x0F) | 0x50); // version 5-style (name-based)
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80); // RFC 4122 variant
        return new Guid(bytes);
    }
}
