-- Each run's results summed by question facet (exam year, block, section, specialty,
-- text-only): a filtered leaderboard adds up the cells its filter keeps instead of scoring every
-- run of the page again. `runs.cells_stamp` says what the cells were computed from (the answers
-- received, the rule packs); a run whose stamp no longer matches is scored again. Kept in step
-- with the other database's file of the same name.
CREATE TABLE run_cells (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    year BIGINT,
    block TEXT,
    section TEXT,
    specialty TEXT,
    text_only BIGINT NOT NULL,
    questions BIGINT NOT NULL,
    answered BIGINT NOT NULL,
    correct BIGINT NOT NULL,
    parse_failures BIGINT NOT NULL,
    points BIGINT NOT NULL,
    points_possible BIGINT NOT NULL,
    metric_questions BIGINT NOT NULL,
    correct_strict BIGINT NOT NULL,
    exact_match BIGINT NOT NULL,
    gestalt_correct BIGINT NOT NULL
);
CREATE INDEX run_cells_by_run ON run_cells (run_id);
ALTER TABLE runs ADD COLUMN cells_stamp TEXT;
-- Looked up by run (a run's jobs) and by status (the queue, the counts) on every page.
CREATE INDEX jobs_by_run ON jobs (run_id);
CREATE INDEX runs_by_status ON runs (status);
