-- A chargeback: the dispute Stripe opened on a payment's charge and where it stands (needs_response, won, lost, …).
ALTER TABLE payments ADD COLUMN dispute_id text NULL;
ALTER TABLE payments ADD COLUMN dispute_status text NULL;
ALTER TABLE payments ADD COLUMN disputed_at timestamptz NULL;
