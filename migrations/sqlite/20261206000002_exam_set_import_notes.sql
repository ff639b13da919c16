-- What an import repaired and which records it left out, and why (JSON: kokushi_shared's
-- igakuqa::ImportNotes), kept with the exam set's version and shown on it. NULL when nothing.
-- Kept in step with the other database's file of the same name.
ALTER TABLE exam_sets ADD COLUMN import_notes TEXT;
