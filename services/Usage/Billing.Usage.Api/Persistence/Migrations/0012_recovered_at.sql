-- The latest moment a subscriber's subscription is known to have been paid up (active or trialing, Stripe's time): a
-- suspension of a past-due episode that began before it is over. Kept so that a later episode's past_due that overtook
-- the payment's own event (whose lower sequence then no longer applies) still lifts the earlier episode's suspension.
-- Existing rows start from their stored active status, if any.
ALTER TABLE usage_subjects ADD COLUMN recovered_at timestamptz NULL;
UPDATE usage_subjects SET recovered_at = status_occurred_at WHERE stripe_status IN ('active', 'trialing');
