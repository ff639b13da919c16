-- Exam sets, their questions, runs, jobs and answers. Kept column for column in step with
-- ../sqlite/20261124000001_init.sql; flags are BIGINT 0/1 so both databases read alike.
CREATE TABLE exam_sets (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (name, content_hash)
);

CREATE TABLE questions (
    exam_set_id BIGINT NOT NULL REFERENCES exam_sets (id),
    position BIGINT NOT NULL,
    problem_id TEXT NOT NULL,
    text_only BIGINT NOT NULL,
    points BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (exam_set_id, problem_id)
);

CREATE TABLE runs (
    id BIGSERIAL PRIMARY KEY,
    exam_set_id BIGINT NOT NULL REFERENCES exam_sets (id),
    model TEXT NOT NULL,
    prompt_format TEXT NOT NULL,
    question_limit BIGINT,
    max_new_tokens BIGINT NOT NULL,
    status TEXT NOT NULL,
    total BIGINT NOT NULL,
    worker TEXT,
    model_info TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);

CREATE TABLE run_questions (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    position BIGINT NOT NULL,
    problem_id TEXT NOT NULL,
    PRIMARY KEY (run_id, problem_id)
);

CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    run_id BIGINT NOT NULL REFERENCES runs (id),
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE answers (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    problem_id TEXT NOT NULL,
    raw_output TEXT NOT NULL,
    extracted TEXT NOT NULL,
    rules_version TEXT NOT NULL,
    correct BIGINT NOT NULL,
    unparsed BIGINT NOT NULL,
    points BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    generated_tokens BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, problem_id)
);
