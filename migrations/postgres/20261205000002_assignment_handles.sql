-- An annotator knows an assignment only by a random handle: the row ids follow the order a
-- task's items were written in, which would tell which answers came from the same run. Handles
-- are below 2^53 so that any JSON reader keeps them exact. Kept in step with the SQLite file of
-- the same name.
ALTER TABLE grading_assignments ADD COLUMN handle BIGINT;
UPDATE grading_assignments SET handle = floor(random() * 9007199254740990)::bigint + 1;
CREATE UNIQUE INDEX grading_assignments_handle ON grading_assignments (handle);
