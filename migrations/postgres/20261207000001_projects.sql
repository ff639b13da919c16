-- Projects (docs/projects.md): research teams on one portal. Exam sets, runs, tunings and
-- grading tasks belong to one project (the audit log and grades through their task); members
-- hold one role per project. An installation's existing data moves into the project `default`,
-- whose members are its users with the role their account had. Kept in step with
-- ../sqlite/20261207000001_projects.sql.
CREATE TABLE projects (
    id BIGSERIAL PRIMARY KEY,
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
VALUES ('default', 'Default project',
        to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));

INSERT INTO project_members (project_id, user_id, role, added_at)
SELECT p.id, u.id,
       CASE
           WHEN EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.role = 'admin')
               THEN 'owner'
           WHEN EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.role = 'researcher')
               THEN 'researcher'
           ELSE 'annotator'
       END,
       to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
FROM users u, projects p
WHERE p.slug = 'default'
  AND EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id);

-- The same file uploaded by two projects is two sets, and neither learns of the other's.
ALTER TABLE exam_sets ADD COLUMN project_id BIGINT REFERENCES projects (id);
UPDATE exam_sets SET project_id = (SELECT id FROM projects WHERE slug = 'default');
ALTER TABLE exam_sets ALTER COLUMN project_id SET NOT NULL;
ALTER TABLE exam_sets DROP CONSTRAINT exam_sets_name_content_hash_key;
ALTER TABLE exam_sets ADD CONSTRAINT exam_sets_project_name_content_hash_key
    UNIQUE (project_id, name, content_hash);

ALTER TABLE runs ADD COLUMN project_id BIGINT REFERENCES projects (id);
UPDATE runs SET project_id = (SELECT id FROM projects WHERE slug = 'default');
ALTER TABLE runs ALTER COLUMN project_id SET NOT NULL;
CREATE INDEX runs_project ON runs (project_id, id);

ALTER TABLE tunings ADD COLUMN project_id BIGINT REFERENCES projects (id);
UPDATE tunings SET project_id = (SELECT id FROM projects WHERE slug = 'default');
ALTER TABLE tunings ALTER COLUMN project_id SET NOT NULL;
CREATE INDEX tunings_project ON tunings (project_id, id);

ALTER TABLE grading_tasks ADD COLUMN project_id BIGINT REFERENCES projects (id);
UPDATE grading_tasks SET project_id = (SELECT id FROM projects WHERE slug = 'default');
ALTER TABLE grading_tasks ALTER COLUMN project_id SET NOT NULL;
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
