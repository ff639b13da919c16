-- One evaluation specification for portal runs and `kokushi eval` (shared::job::EvalSettings):
-- every setting of a run as JSON (NULL for runs made before: their prompt_format,
-- max_new_tokens and scoring columns say all), the exam set worked examples come from, and the
-- prompt id the worker recorded (a chat template's hash). Answers keep what a predictions line
-- needs beyond the letters: each choice's mean log-probability, whether a loglik run answered
-- by generation, and why a question could not be asked. Kept in step with the other
-- database's file of the same name.
ALTER TABLE runs ADD COLUMN eval_settings TEXT;
ALTER TABLE runs ADD COLUMN shot_pool_exam_set_id BIGINT;
ALTER TABLE runs ADD COLUMN prompt_id TEXT;
ALTER TABLE answers ADD COLUMN choice_logprob_means TEXT;
ALTER TABLE answers ADD COLUMN generated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE answers ADD COLUMN error TEXT;
