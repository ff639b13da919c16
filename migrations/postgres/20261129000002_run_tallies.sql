-- Each run's tally kept beside it, updated in the transaction that stores an answer, so that the
-- leaderboard reads one row per run instead of every answer. Kept in step with
-- ../sqlite/20261129000002_run_tallies.sql.
ALTER TABLE runs ADD COLUMN tally_answered BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN tally_correct BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN tally_unparsed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN tally_points BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN tally_points_possible BIGINT NOT NULL DEFAULT 0;

UPDATE runs SET
    tally_answered = (SELECT COUNT(*) FROM answers a WHERE a.run_id = runs.id),
    tally_correct = (SELECT COALESCE(SUM(a.correct), 0) FROM answers a WHERE a.run_id = runs.id),
    tally_unparsed = (SELECT COALESCE(SUM(a.unparsed), 0) FROM answers a WHERE a.run_id = runs.id),
    tally_points = (SELECT COALESCE(SUM(a.points * a.correct), 0) FROM answers a WHERE a.run_id = runs.id),
    tally_points_possible = (SELECT COALESCE(SUM(a.points), 0) FROM answers a WHERE a.run_id = runs.id);
