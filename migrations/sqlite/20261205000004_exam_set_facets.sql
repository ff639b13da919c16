-- The exam years, blocks and specialties each exam set holds (JSON), written when it is stored:
-- a leaderboard filter may name only these. NULL for sets stored before; filled on first use.
-- Kept in step with the other database's file of the same name.
ALTER TABLE exam_sets ADD COLUMN facets TEXT;
