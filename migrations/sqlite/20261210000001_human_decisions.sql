-- Each run's answers that human grading decided, with whether the human verdict and the
-- automatic result count each one correct and its question's facets (as in run_cells): a
-- filtered leaderboard's human-adjusted columns are one indexed sum over them, and the run's own
-- totals are kept on its row (runs.human_*), instead of resolving the run's whole grading state
-- on every request. `runs.grading_version` is raised in the transaction of
-- every grading write that touches the run (a task created, a grade, an adjudication);
-- `runs.human_stamp` is the version the stored decisions were computed from, and a run whose two
-- differ is computed again before it is read. Runs graded before this release start stale.
-- Kept in step with the other database's file of the same name.
CREATE TABLE human_decisions (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    problem_id TEXT NOT NULL,
    human_correct BIGINT NOT NULL,
    automatic_correct BIGINT NOT NULL,
    year BIGINT,
    block TEXT,
    section TEXT,
    specialty TEXT,
    text_only BIGINT NOT NULL,
    PRIMARY KEY (run_id, problem_id)
);
ALTER TABLE runs ADD COLUMN grading_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN human_stamp BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN human_resolved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN human_gained BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN human_lost BIGINT NOT NULL DEFAULT 0;
UPDATE runs SET grading_version = 1 WHERE id IN (SELECT run_id FROM grading_items);
