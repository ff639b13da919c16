-- LoRA tunings as queued jobs, their loss curves, and runs that evaluate a model with an
-- adapter. Kept in step with ../sqlite/20261129000004_tunings.sql. A job belongs to a run
-- or to a tuning, so jobs.run_id may now be NULL.
CREATE TABLE tunings (
    id BIGSERIAL PRIMARY KEY,
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

ALTER TABLE jobs ALTER COLUMN run_id DROP NOT NULL;
ALTER TABLE jobs ADD COLUMN tuning_id BIGINT REFERENCES tunings (id);

ALTER TABLE runs ADD COLUMN adapter TEXT;
ALTER TABLE runs ADD COLUMN tuning_id BIGINT REFERENCES tunings (id);
