-- LoRA tunings as queued jobs, their loss curves, and runs that evaluate a model with an
-- adapter. Kept in step with ../postgres/20261129000004_tunings.sql. A job belongs to a run
-- or to a tuning, so jobs.run_id may now be NULL: SQLite cannot drop NOT NULL in place, so
-- the table is rebuilt with its rows and ids.
CREATE TABLE tunings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    adapter TEXT NOT NULL,
    base_model TEXT NOT NULL,
    data_exam_set_id BIGINT NOT NULL REFERENCES exam_sets (id),
    prompt_format TEXT NOT NULL,
    preset TEXT NOT NULL,
    plan TEXT NOT NULL,
    steps BIGINT NOT NULL,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    worker TEXT,
    model_info TEXT,
    error TEXT,
    train_examples BIGINT,
    validation_examples BIGINT,
    too_long BIGINT,
    final_validation_loss DOUBLE PRECISION,
    eval_exam_set_id BIGINT REFERENCES exam_sets (id),
    eval_limit BIGINT,
    eval_max_new_tokens BIGINT,
    base_run_id BIGINT REFERENCES runs (id),
    tuned_run_id BIGINT REFERENCES runs (id),
    created_by BIGINT REFERENCES users (id),
    created_at TEXT NOT NULL,
    finished_at TEXT
);

CREATE TABLE tuning_points (
    tuning_id BIGINT NOT NULL REFERENCES tunings (id),
    step BIGINT NOT NULL,
    validation BIGINT NOT NULL,
    loss DOUBLE PRECISION NOT NULL,
    learning_rate DOUBLE PRECISION,
    grad_norm DOUBLE PRECISION,
    tokens_per_second DOUBLE PRECISION,
    PRIMARY KEY (tuning_id, step, validation)
);

CREATE TABLE jobs_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT REFERENCES runs (id),
    tuning_id BIGINT REFERENCES tunings (id),
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO jobs_rebuilt (id, run_id, kind, status, created_at, updated_at)
    SELECT id, run_id, kind, status, created_at, updated_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_rebuilt RENAME TO jobs;

ALTER TABLE runs ADD COLUMN adapter TEXT;
ALTER TABLE runs ADD COLUMN tuning_id BIGINT REFERENCES tunings (id);
