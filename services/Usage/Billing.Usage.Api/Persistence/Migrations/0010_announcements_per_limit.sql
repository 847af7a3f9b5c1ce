-- QuotaLow and QuotaExhausted once per window AND limit: after an upgrade in the middle of a window (Pro's 250 used up,
-- then Max's 1,000) the new limit's 80 % and 100 % are announced too, so a product can prompt again; before, the first
-- limit's announcements held the window's only slots. A downgrade and an upgrade back to a limit already announced in
-- the window announce nothing again.
ALTER TABLE usage_announcements DROP CONSTRAINT pk_usage_announcements;
ALTER TABLE usage_announcements ADD CONSTRAINT pk_usage_announcements PRIMARY KEY (user_id, meter, window_start, kind, quota_limit);
