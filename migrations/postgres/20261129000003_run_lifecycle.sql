-- Who made a run, and its queue lane (high or normal). Kept in step with
-- ../sqlite/20261129000003_run_lifecycle.sql.
ALTER TABLE runs ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE runs ADD COLUMN created_by BIGINT REFERENCES users (id);
