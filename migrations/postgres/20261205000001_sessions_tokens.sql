-- Sessions end after a spell of idleness as well as after their lifetime: last_seen_at is when
-- the session was last used (noted at most once a minute). API tokens may carry an expiry.
-- Kept in step with the other database's file of the same name.
ALTER TABLE sessions ADD COLUMN last_seen_at TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
