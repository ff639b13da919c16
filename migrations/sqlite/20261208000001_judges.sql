-- LLM judges (docs/judges.md): versioned judge prompts, judge runs (a model grading a grading
-- task's items blind, queued as a job like a run), their grades (append-only, beside the
-- humans' and never mixed with them), each project's calibration threshold and the tasks it
-- calibrates judges on; and each job's estimated and measured cost. Kept in step with ../postgres/20261208000001_judges.sql.
CREATE TABLE judge_prompts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id BIGINT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    template TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    UNIQUE (project_id, name, version)
);

CREATE TABLE judge_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id BIGINT NOT NULL REFERENCES projects (id),
    task_id BIGINT NOT NULL REFERENCES grading_tasks (id),
    model TEXT NOT NULL,
    adapter TEXT,
    settings TEXT NOT NULL,
    prompt_name TEXT NOT NULL,
    prompt_version BIGINT NOT NULL,
    prompt_hash TEXT NOT NULL,
    template TEXT NOT NULL,
    judge_key TEXT NOT NULL,
    status TEXT NOT NULL,
    worker TEXT,
    model_info TEXT,
    prompt_id TEXT,
    error TEXT,
    created_by BIGINT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX judge_runs_task ON judge_runs (task_id);
CREATE INDEX judge_runs_key ON judge_runs (project_id, judge_key);

CREATE TABLE judge_grades (
    judge_run_id BIGINT NOT NULL REFERENCES judge_runs (id),
    item_id BIGINT NOT NULL REFERENCES grading_items (id),
    verdict TEXT,
    rationale BIGINT,
    flags TEXT NOT NULL,
    raw_output TEXT NOT NULL,
    error TEXT,
    prompt_tokens BIGINT NOT NULL,
    generated_tokens BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (judge_run_id, item_id)
);

CREATE TRIGGER judge_grades_no_update BEFORE UPDATE ON judge_grades
BEGIN SELECT RAISE(ABORT, 'judge grades are append-only'); END;
CREATE TRIGGER judge_grades_no_delete BEFORE DELETE ON judge_grades
BEGIN SELECT RAISE(ABORT, 'judge grades are append-only'); END;

CREATE TABLE judge_calibration_tasks (
    task_id BIGINT NOT NULL PRIMARY KEY REFERENCES grading_tasks (id),
    project_id BIGINT NOT NULL REFERENCES projects (id),
    added_by BIGINT NOT NULL REFERENCES users (id),
    added_at TEXT NOT NULL
);

ALTER TABLE projects ADD COLUMN judge_threshold REAL NOT NULL DEFAULT 0.6;
ALTER TABLE jobs ADD COLUMN judge_run_id BIGINT REFERENCES judge_runs (id);
CREATE INDEX jobs_judge_run ON jobs (judge_run_id);

-- A job's cost: the estimate made before it was queued (a dry run: its prompts tokenized by the
-- model's own tokenizer, timed with the speed its model was last measured at) and what it took
-- (the worker's measurement, summed over the attempts that reported one).
ALTER TABLE jobs ADD COLUMN estimate TEXT;
ALTER TABLE jobs ADD COLUMN work TEXT;
ALTER TABLE jobs ADD COLUMN work_attempt BIGINT;
