-- The Sequence of the update that began the current past-due episode. SubscriptionAccessSuspended carries it, so Usage
-- can tell whether the episode a suspension is about ended in a payment by Payments' sequences — which only grow per
-- subscription — rather than by Stripe's event times, which Payments stamps with whichever event made it re-read the
-- subscription and which need not grow. Existing episodes take the current sequence (at or after their start: a
-- suspension is then never wrongly voided).
ALTER TABLE subscriptions ADD COLUMN past_due_sequence bigint NULL;
UPDATE subscriptions SET past_due_sequence = sequence WHERE past_due_since IS NOT NULL;
