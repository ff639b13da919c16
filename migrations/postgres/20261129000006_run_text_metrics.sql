-- A finished run's strict letter matches, exact matches and Gestalt-method matches (JSON,
-- shared::api::RunMetrics), written with its per-year verdicts once it has succeeded, for the
-- leaderboard's exact-match and Gestalt columns. Kept in step with
-- ../sqlite/20261129000006_run_text_metrics.sql.
ALTER TABLE runs ADD COLUMN text_metrics TEXT;
