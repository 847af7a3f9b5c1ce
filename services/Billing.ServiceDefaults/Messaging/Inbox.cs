using Dapper;
using MassTransit;
using Npgsql;

namespace Billing.ServiceDefaults.Messaging;

/// <summary>
/// Consumer-side de-duplication (ARCHITECTURE.md rule 2): records <c>(message_id, consumer)</c> in the same
/// transaction as the consumer's effect, so a redelivered or re-published message changes nothing.
/// </summary>
public sealed class Inbox(NpgsqlDataSource dataSource)
{
    /// <summary>
    /// Runs <paramref name="effect"/> in a transaction that also records the message as handled by
    /// <paramref name="consumer"/>; commits both or neither. Returns false (and runs nothing) when it was handled before.
    /// </summary>
    public async Task<bool> HandleOnceAsync(Guid messageId, string consumer,
        Func<NpgsqlConnection, NpgsqlTransaction, CancellationToken, Task> effect, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        // A concurrent duplicate blocks here on the primary key until the first commits, then inserts nothing.
        var first = await connection.ExecuteAsync(new CommandDefinition(
            "INSERT INTO inbox (message_id, consumer) VALUES (@MessageId, @Consumer) ON CONFLICT DO NOTHING",
            new { MessageId = messageId, Consumer = consumer }, transaction, cancellationToken: cancellationToken));
        if (first == 0)
        {
            return false;
        }

        await effect(connection, transaction, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return true;
    }

    /// <summary>The same, for a MassTransit message: the consumer name is the consumer's type.</summary>
    public Task<bool> HandleOnceAsync<TMessage>(ConsumeContext<TMessage> context, Type consumer,
        Func<NpgsqlConnection, NpgsqlTransaction, CancellationToken, Task> effect) where TMessage : class =>
        HandleOnceAsync(context.MessageId ?? throw new InvalidOperationException("A message without MessageId cannot be de-duplicated."),
            consumer.Name, effect, context.CancellationToken);
}
