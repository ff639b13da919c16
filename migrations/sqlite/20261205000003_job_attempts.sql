-- A job's attempt: 1, then one more at each retry. A retried job keeps its id, so workers' events
-- carry their attempt and the server ignores those of an attempt that is no longer the latest.
-- Kept in step with the other database's file of the same name.
ALTER TABLE jobs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 1;
