-- Human grading: tasks made from runs, their items, who grades which item in what order,
-- every version of every grade and adjudication, and the audit log. Kept in step with
-- ../postgres/20261130000001_grading.sql. Grades, adjudications and the audit log are
-- append-only: triggers refuse UPDATE and DELETE, so not even a bug can overwrite one.
ALTER TABLE exam_sets ADD COLUMN uploaded_by BIGINT REFERENCES users (id);

CREATE TABLE grading_tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    exam_set_id BIGINT NOT NULL REFERENCES exam_sets (id),
    selection TEXT NOT NULL,
    sample_size BIGINT,
    seed BIGINT NOT NULL,
    overlap BIGINT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL
);

CREATE TABLE grading_task_runs (
    task_id BIGINT NOT NULL REFERENCES grading_tasks (id),
    run_id BIGINT NOT NULL REFERENCES runs (id),
    PRIMARY KEY (task_id, run_id)
);

CREATE TABLE grading_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id BIGINT NOT NULL REFERENCES grading_tasks (id),
    run_id BIGINT NOT NULL REFERENCES runs (id),
    problem_id TEXT NOT NULL,
    UNIQUE (task_id, run_id, problem_id)
);
CREATE INDEX grading_items_run ON grading_items (run_id);

CREATE TABLE grading_assignments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id BIGINT NOT NULL REFERENCES grading_tasks (id),
    item_id BIGINT NOT NULL REFERENCES grading_items (id),
    annotator_id BIGINT NOT NULL REFERENCES users (id),
    position BIGINT NOT NULL,
    UNIQUE (item_id, annotator_id),
    UNIQUE (task_id, annotator_id, position)
);
CREATE INDEX grading_assignments_annotator ON grading_assignments (annotator_id, task_id);

CREATE TABLE grades (
    assignment_id BIGINT NOT NULL REFERENCES grading_assignments (id),
    version BIGINT NOT NULL,
    verdict TEXT NOT NULL,
    letters TEXT NOT NULL,
    rationale BIGINT,
    flags TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    PRIMARY KEY (assignment_id, version)
);

CREATE TABLE adjudications (
    item_id BIGINT NOT NULL REFERENCES grading_items (id),
    version BIGINT NOT NULL,
    verdict TEXT NOT NULL,
    letters TEXT NOT NULL,
    rationale BIGINT,
    flags TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    PRIMARY KEY (item_id, version)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor_id BIGINT NOT NULL REFERENCES users (id),
    action TEXT NOT NULL,
    task_id BIGINT NOT NULL REFERENCES grading_tasks (id),
    item_id BIGINT REFERENCES grading_items (id),
    before_value TEXT,
    after_value TEXT
);
CREATE INDEX audit_log_task ON audit_log (task_id, id);

CREATE TRIGGER grades_no_update BEFORE UPDATE ON grades
BEGIN SELECT RAISE(ABORT, 'grades are append-only'); END;
CREATE TRIGGER grades_no_delete BEFORE DELETE ON grades
BEGIN SELECT RAISE(ABORT, 'grades are append-only'); END;
CREATE TRIGGER adjudications_no_update BEFORE UPDATE ON adjudications
BEGIN SELECT RAISE(ABORT, 'adjudications are append-only'); END;
CREATE TRIGGER adjudications_no_delete BEFORE DELETE ON adjudications
BEGIN SELECT RAISE(ABORT, 'adjudications are append-only'); END;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
