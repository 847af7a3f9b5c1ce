-- What ends a past-due episode, kept on the subscriber so that any order of the events gives the same state:
--   recovered_sequence: past-due episodes that began with an update of a lower Sequence are over — an applied update
--     that says active/trialing, or one whose previous status was (Payments' sequences only grow per subscription;
--     Stripe's event times, which Payments stamps updates with, need not);
--   suspended_sequence: the Sequence of the update that began the suspended episode, as the suspension says;
--   paid_at: the latest payment of the current period's invoice (or a later one's), Stripe's time.
ALTER TABLE usage_subjects ADD COLUMN recovered_sequence bigint NULL;
ALTER TABLE usage_subjects ADD COLUMN suspended_sequence bigint NULL;
ALTER TABLE usage_subjects ADD COLUMN paid_at timestamptz NULL;
