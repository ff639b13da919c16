-- Rule packs of an exam set (docs/rule-packs.md): uploaded by its owner, one row per version
-- and never changed once written. A set's questions are scored under the highest version of
-- each exam's pack it holds, else the built-in pack; a run records the versions it was scored
-- under (runs.rules_versions, JSON: exam -> version) and keeps them until it is rescored on
-- request. Kept in step with ../sqlite/20261206000003_rule_pack_versions.sql.
CREATE TABLE exam_set_rule_packs (
    id BIGSERIAL PRIMARY KEY,
    exam_set_id BIGINT NOT NULL REFERENCES exam_sets (id),
    exam TEXT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    UNIQUE (exam_set_id, exam, version)
);

ALTER TABLE runs ADD COLUMN rules_versions TEXT;
