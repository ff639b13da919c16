-- How a run's answers are chosen (shared::job::Scoring: 'generation' or 'loglik'), and, for
-- log-likelihood runs, each choice letter's log-probability (a JSON array in choice order).
-- Kept in step with ../postgres/20261129000007_scoring.sql.
ALTER TABLE runs ADD COLUMN scoring TEXT NOT NULL DEFAULT 'generation';
ALTER TABLE answers ADD COLUMN choice_logprobs TEXT;
