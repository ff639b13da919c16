-- A finished run's accuracy, points and pass/fail per exam year (JSON, shared::api::YearVerdict),
-- written once it has succeeded, for the leaderboard. Kept in step with
-- ../sqlite/20261129000005_run_year_verdicts.sql.
ALTER TABLE runs ADD COLUMN year_verdicts TEXT;
