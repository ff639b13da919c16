-- Projects (docs/projects.md): research teams on one portal. Exam sets, runs, tunings and
-- grading tasks belong to one project (the audit log and grades through their task); members
-- hold one role per project. An installation's existing data moves into the project `default`,
-- whose members are its users with the role their account had. Kept in step with
-- ../postgres/20261207000001_projects.sql.
--
-- exam_sets' uniqueness becomes per project, which SQLite can only do by rebuilding the table;
-- dropping a table others refer to needs foreign keys off, which cannot be switched inside a
-- transaction: Db::migrate switches them off on its connection before migrating, and runs
-- PRAGMA foreign_key_check after.

CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE project_members (
    project_id BIGINT NOT NULL REFERENCES projects (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

INSERT INTO projects (slug, name, created_at)
VALUES ('default', 'Default project', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));

INSERT INTO project_members (project_id, user_id, role, added_at)
SELECT p.id, u.id,
       CASE
           WHEN EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.role = 'admin')
               THEN 'owner'
           WHEN EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.role = 'researcher')
               THEN 'researcher'
           ELSE 'annotator'
       END,
       strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
FROM users u, projects p
WHERE p.slug = 'default'
  AND EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id);

-- exam_sets, rebuilt with project_id and UNIQUE (project_id, name, content_hash): the same file
-- uploaded by two projects is two sets, and neither learns of the other's.
CREATE TABLE exam_sets_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    uploaded_by BIGINT REFERENCES users (id),
    facets TEXT,
    import_notes TEXT,
    project_id BIGINT NOT NULL REFERENCES projects (id),
    UNIQUE (project_id, name, content_hash)
);
INSERT INTO exam_sets_rebuilt
    (id, name, content_hash, created_at, uploaded_by, facets, import_notes, project_id)
SELECT e.id, e.name, e.content_hash, e.created_at, e.uploaded_by, e.facets, e.import_notes,
       (SELECT id FROM projects WHERE slug = 'default')
FROM exam_sets e;
DROP TABLE exam_sets;
ALTER TABLE exam_sets_rebuilt RENAME TO exam_sets;

ALTER TABLE runs ADD COLUMN project_id BIGINT REFERENCES projects (id);
UPDATE runs SET project_id = (SELECT id FROM projects WHERE slug = 'default');
CREATE INDEX runs_project ON runs (project_id, id);

ALTER TABLE tunings ADD COLUMN project_id BIGINT REFERENCES projects (id);
UPDATE tunings SET project_id = (SELECT id FROM projects WHERE slug = 'default');
CREATE INDEX tunings_project ON tunings (project_id, id);

ALTER TABLE grading_tasks ADD COLUMN project_id BIGINT REFERENCES projects (id);
UPDATE grading_tasks SET project_id = (SELECT id FROM projects WHERE slug = 'default');
CREATE INDEX grading_tasks_project ON grading_tasks (project_id, id);

-- An exam set shared read-only with another project.
CREATE TABLE exam_set_shares (
    exam_set_id BIGINT NOT NULL REFERENCES exam_sets (id),
    project_id BIGINT NOT NULL REFERENCES projects (id),
    shared_by BIGINT NOT NULL REFERENCES users (id),
    shared_at TEXT NOT NULL,
    PRIMARY KEY (exam_set_id, project_id)
);
CREATE INDEX exam_set_shares_project ON exam_set_shares (project_id);

-- Runs a project has put on the portal-wide leaderboard.
CREATE TABLE published_runs (
    run_id BIGINT PRIMARY KEY REFERENCES runs (id),
    published_by BIGINT NOT NULL REFERENCES users (id),
    published_at TEXT NOT NULL
);

-- A browser session's project (none: the account's first), and an API token's one project.
ALTER TABLE sessions ADD COLUMN project_id BIGINT REFERENCES projects (id);
ALTER TABLE api_tokens ADD COLUMN project_id BIGINT REFERENCES projects (id);
ALTER TABLE api_tokens ADD COLUMN read_only BIGINT NOT NULL DEFAULT 0;
UPDATE api_tokens SET project_id = (SELECT id FROM projects WHERE slug = 'default');
