-- QuotaLow and QuotaExhausted are published once per window. The announcer used to delete an announcement's row once it
-- had moved it into the outbox, so the only guard left was the outbox row's derived id — and sent outbox rows go after
-- 7 days. In a monthly window whose usage went down again (a reservation released) and then back up, a second QuotaLow
-- went out. The rows now stay, marked published, until the window's counter is retired; the reservation path writes
-- its announcements here too instead of straight into the outbox.
ALTER TABLE usage_announcements ADD COLUMN published_at timestamptz;
CREATE INDEX ix_usage_announcements_unpublished ON usage_announcements (occurred_at) WHERE published_at IS NULL;
