-- When the latest checkout session was made, by Billing's clock. A checkout for the same price gets that session back
-- while it is open and at most ten minutes old (a double click, a reload), whenever the click falls; an older one is
-- expired and replaced. (The idempotency key used to carry a fixed ten-minute bucket instead, which gave a double click
-- across a bucket's end a second session and expired the first under the user's feet.) NULL for sessions made before
-- this column: those are never handed out again.
ALTER TABLE subscription_checkouts ADD COLUMN session_created_at timestamptz NULL;
