//! A LoRA tuning run: examples in, a PEFT adapter out, with checkpoints a killed run resumes
//! from and a record of what it was tuned on for the leakage gate.
//!
//! The run folder (`--out`) holds, as the run goes:
//! - `tuning.json` — the manifest: base model, recipe, data sources, prompt format, seed,
//!   example counts, steps done, final validation loss; `"finished": true` once done;
//! - `tuning-ngrams.bin` — the character 13-grams of every example's content
//!   (`kokushi_shared::leakage`), so an evaluation can measure overlap without the data;
//! - `events.jsonl` — one line a step (loss, learning rate, tokens/s) and a line each
//!   validation;
//! - `checkpoint/` — the adapter so far, `state.safetensors` (matrices, AdamW moments, step)
//!   and `progress.json`, replaced atomically every `checkpoint_every` steps;
//! - `adapter_config.json` + `adapter_model.safetensors` — the finished adapter, in PEFT's form.
//!
//! Data order is a function of the seed and the step (each epoch a seeded permutation of the
//! training examples, `batch` examples a step), and dropout masks are drawn from the seed and
//! the step, so resuming needs only the step count and the trainer's state: a resumed run
//! continues the same loss curve and ends with the same adapter.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The projections LoRA can adapt, by their Hugging Face names (`all-linear` is all of them).
pub use kokushi_engine::PROJECTIONS;
use kokushi_engine::{AdamWSettings, EngineError, LoraSpec, Model, Sequence};
use kokushi_shared::leakage::NgramIndex;
use kokushi_shared::prompt::PromptFormat;
use kokushi_shared::tuning::Example;
pub use kokushi_shared::tuning::plan::{DataSource, PRESETS, Recipe, RunPlan, Schedule};
use serde::{Deserialize, Serialize};

/// The manifest, `tuning.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub plan: RunPlan,
    pub train_examples: usize,
    pub validation_examples: usize,
    /// Examples left out for exceeding `max_seq_len`.
    pub too_long: usize,
    pub steps_done: u64,
    pub finished: bool,
    pub final_validation_loss: Option<f64>,
    /// The file holding the data's n-grams (relative to the run folder).
    pub ngrams_file: String,
}

/// What a run reports as it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TuneEvent {
    Step {
        step: u64,
        steps: u64,
        loss: f64,
        learning_rate: f64,
        grad_norm: f64,
        tokens_per_second: f64,
    },
    Validation {
        step: u64,
        loss: f64,
    },
    Checkpoint {
        step: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("{0}")]
    Plan(String),
    /// The caller asked the run to stop (a cancelled job).
    #[error("stopped on request")]
    Stopped,
}

fn file_error(path: &Path, problem: impl std::fmt::Display) -> TuneError {
    TuneError::File {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

/// `content` written to `path` whole or not at all (a temporary file renamed over it).
fn write_atomic(path: &Path, content: &[u8]) -> Result<(), TuneError> {
    let partial = path.with_extension("tmp");
    std::fs::write(&partial, content).map_err(|e| file_error(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| file_error(path, e))
}

/// The checkpoint's record of progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    step: u64,
    plan: RunPlan,
}

/// The examples of step `step`: positions `step·batch …` of the endless sequence of epochs,
/// each a permutation of `0..n` drawn from `seed` and the epoch.
pub fn step_indices(n: usize, batch: usize, step: u64, seed: u64) -> Vec<usize> {
    let mut out = Vec::with_capacity(batch);
    let mut cached: Option<(u64, Vec<usize>)> = None;
    for k in 0..batch as u64 {
        let position = step * batch as u64 + k;
        let epoch = position / n as u64;
        if cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            cached = Some((
                epoch,
                permutation(n, seed ^ epoch.wrapping_mul(0x9E37_79B9)),
            ));
        }
        if let Some((_, order)) = &cached {
            #[allow(clippy::cast_possible_truncation)]
            out.push(order[(position % n as u64) as usize]);
        }
    }
    out
}

/// A Fisher–Yates permutation of `0..n` from SplitMix64(`seed`).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        let value = kokushi_shared::tuning::mix(state);
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        value
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        #[allow(clippy::cast_possible_truncation)]
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Tokenizes `examples` for `model`, leaving out those longer than `max_len` tokens (counted).
pub fn sequences(
    model: &Model,
    examples: &[Example],
    max_len: usize,
) -> Result<(Vec<Sequence>, usize), TuneError> {
    let mut kept = Vec::with_capacity(examples.len());
    let mut too_long = 0;
    for example in examples {
        let sequence = model
            .training_sequence(&example.prompt, &example.response)
            .map_err(|e| TuneError::Plan(format!("example {}: {e}", example.id)))?;
        if sequence.ids.len() > max_len {
            too_long += 1;
        } else {
            kept.push(sequence);
        }
    }
    Ok((kept, too_long))
}

/// Validation examples scored each time (the first ones of the validation set), so a
/// validation costs a bounded time.
pub const MAX_VALIDATION: usize = 48;

/// Runs (or resumes) the plan on `model` with `train` and `validation` examples, writing into
/// `out`; `on_event` hears each step, validation and checkpoint, and may stop the run
/// ([`TuneError::Stopped`]; the last checkpoint stays to resume from). Returns the manifest
/// written.
#[allow(clippy::too_many_lines)]
pub fn run(
    model: &mut Model,
    plan: &RunPlan,
    train: &[Example],
    validation: &[Example],
    out: &Path,
    mut on_event: impl FnMut(&TuneEvent) -> std::ops::ControlFlow<()>,
) -> Result<Manifest, TuneError> {
    let recipe = &plan.recipe;
    if recipe.batch == 0 {
        return Err(TuneError::Plan(
            "the batch must hold at least one example".into(),
        ));
    }
    for id in plan.prompt_format.split(',') {
        PromptFormat::from_id(id)
            .ok_or_else(|| TuneError::Plan(format!("unknown prompt format {id}")))?;
    }
    std::fs::create_dir_all(out).map_err(|e| file_error(out, e))?;
    let checkpoint = out.join("checkpoint");
    let previous = out.join("checkpoint.old");
    // A crash between the renames of a checkpoint leaves the last good one as `.old`.
    if !checkpoint.join("progress.json").is_file() && previous.join("progress.json").is_file() {
        std::fs::rename(&previous, &checkpoint).map_err(|e| file_error(&checkpoint, e))?;
    }
    let resume_from = match std::fs::read_to_string(checkpoint.join("progress.json")) {
        Ok(text) => {
            let progress: Progress = serde_json::from_str(&text)
                .map_err(|e| file_error(&checkpoint.join("progress.json"), e))?;
            if progress.plan != *plan {
                return Err(TuneError::Plan(format!(
                    "{} holds a checkpoint of another run (different model, data or recipe); \
                     choose another --out, or delete the folder to start over",
                    out.display()
                )));
            }
            Some(progress.step)
        }
        Err(_) => None,
    };

    let (train_seqs, too_long_train) = sequences(model, train, recipe.max_seq_len)?;
    let (validation_seqs, too_long_validation) = sequences(model, validation, recipe.max_seq_len)?;
    if train_seqs.is_empty() {
        return Err(TuneError::Plan(format!(
            "no training example fits in {} tokens ({} are longer): raise --max-seq-len",
            recipe.max_seq_len, too_long_train
        )));
    }
    let validation_seqs: Vec<Sequence> = validation_seqs.into_iter().take(MAX_VALIDATION).collect();

    let ngrams = NgramIndex::from_texts(train.iter().chain(validation).map(|e| e.content.as_str()));
    let ngrams_file = "tuning-ngrams.bin".to_owned();
    write_atomic(&out.join(&ngrams_file), &ngrams.to_bytes())?;
    let mut manifest = Manifest {
        plan: plan.clone(),
        train_examples: train_seqs.len(),
        validation_examples: validation_seqs.len(),
        too_long: too_long_train + too_long_validation,
        steps_done: resume_from.unwrap_or(0),
        finished: false,
        final_validation_loss: None,
        ngrams_file,
    };
    let write_manifest = |manifest: &Manifest| {
        let text = serde_json::to_string_pretty(manifest).unwrap_or_default();
        write_atomic(&out.join("tuning.json"), text.as_bytes())
    };
    write_manifest(&manifest)?;

    let spec = LoraSpec {
        rank: recipe.rank,
        alpha: recipe.alpha,
        dropout: recipe.dropout,
        targets: recipe.targets.clone(),
    };
    let adamw = AdamWSettings {
        weight_decay: recipe.weight_decay,
        max_grad_norm: recipe.max_grad_norm,
        ..AdamWSettings::default()
    };
    let mut trainer = model.start_lora("tuning", &spec, adamw, plan.seed)?;
    let events_path = out.join("events.jsonl");
    let mut kept_events = String::new();
    if let Some(step) = resume_from {
        trainer.load_state(&checkpoint.join("state.safetensors"))?;
        if trainer.steps() != step {
            return Err(file_error(
                &checkpoint,
                format!("state at step {} but progress at {step}", trainer.steps()),
            ));
        }
        // Keep the events up to the checkpoint: the resumed run writes the rest again.
        if let Ok(text) = std::fs::read_to_string(&events_path) {
            for line in text.lines() {
                let at = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["step"].as_u64());
                if at.is_some_and(|s| s <= step) {
                    kept_events.push_str(line);
                    kept_events.push('\n');
                }
            }
        }
    }
    write_atomic(&events_path, kept_events.as_bytes())?;
    let mut events = std::fs::OpenOptions::new()
        .append(true)
        .open(&events_path)
        .map_err(|e| file_error(&events_path, e))?;
    let mut emit = |event: TuneEvent| -> Result<(), TuneError> {
        let line = serde_json::to_string(&event).unwrap_or_default();
        writeln!(events, "{line}").map_err(|e| file_error(&events_path, e))?;
        if on_event(&event).is_break() {
            return Err(TuneError::Stopped);
        }
        Ok(())
    };

    let save_checkpoint = |trainer: &kokushi_engine::LoraTrainer, step: u64| {
        let staging = out.join("checkpoint.tmp");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| file_error(&staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| file_error(&staging, e))?;
        trainer.save_peft(&staging, &plan.base_model)?;
        trainer.save_state(&staging.join("state.safetensors"))?;
        let progress = Progress {
            step,
            plan: plan.clone(),
        };
        let text = serde_json::to_string_pretty(&progress).unwrap_or_default();
        std::fs::write(staging.join("progress.json"), text).map_err(|e| file_error(&staging, e))?;
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| file_error(&previous, e))?;
        }
        if checkpoint.exists() {
            std::fs::rename(&checkpoint, &previous).map_err(|e| file_error(&checkpoint, e))?;
        }
        std::fs::rename(&staging, &checkpoint).map_err(|e| file_error(&checkpoint, e))?;
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| file_error(&previous, e))?;
        }
        Ok::<(), TuneError>(())
    };

    model.use_adapter(Some(trainer.name()))?;
    let mut last_validation = None;
    for step in trainer.steps()..plan.steps {
        let started = Instant::now();
        let batch: Vec<Sequence> = step_indices(train_seqs.len(), recipe.batch, step, plan.seed)
            .into_iter()
            .map(|i| train_seqs[i].clone())
            .collect();
        let learning_rate = recipe.learning_rate_at(step, plan.steps);
        let stats = trainer.step(
            model,
            &batch,
            learning_rate,
            plan.seed ^ (step + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
        )?;
        let done = step + 1;
        #[allow(clippy::cast_precision_loss)]
        let tokens_per_second = stats.tokens_seen as f64 / started.elapsed().as_secs_f64();
        emit(TuneEvent::Step {
            step: done,
            steps: plan.steps,
            loss: stats.loss,
            learning_rate,
            grad_norm: stats.grad_norm,
            tokens_per_second,
        })?;
        let last = done == plan.steps;
        if !validation_seqs.is_empty()
            && (last || (plan.eval_every > 0 && done.is_multiple_of(plan.eval_every)))
        {
            let loss = trainer.loss(model, &validation_seqs)?;
            last_validation = Some(loss);
            emit(TuneEvent::Validation { step: done, loss })?;
        }
        if last || (plan.checkpoint_every > 0 && done.is_multiple_of(plan.checkpoint_every)) {
            save_checkpoint(&trainer, done)?;
            manifest.steps_done = done;
            write_manifest(&manifest)?;
            emit(TuneEvent::Checkpoint { step: done })?;
        }
    }
    if last_validation.is_none() && !validation_seqs.is_empty() {
        last_validation = Some(trainer.loss(model, &validation_seqs)?);
    }
    trainer.save_peft(out, &plan.base_model)?;
    manifest.steps_done = trainer.steps();
    manifest.finished = true;
    manifest.final_validation_loss = last_validation;
    write_manifest(&manifest)?;
    Ok(manifest)
}

/// The manifest of the run an adapter folder came from: `DIR/tuning.json`, or the run folder's
/// when `DIR` is its `checkpoint/`. `None` for an adapter tuned elsewhere.
pub fn manifest_of(adapter: &Path) -> Option<(PathBuf, Manifest)> {
    [adapter.to_path_buf(), adapter.join("..")]
        .into_iter()
        .find_map(|dir| {
            let text = std::fs::read_to_string(dir.join("tuning.json")).ok()?;
            Some((dir, serde_json::from_str(&text).ok()?))
        })
}

/// The tuning data's n-grams recorded beside an adapter, if any.
pub fn ngrams_of(adapter: &Path) -> Option<NgramIndex> {
    let (dir, manifest) = manifest_of(adapter)?;
    NgramIndex::from_bytes(&std::fs::read(dir.join(manifest.ngrams_file)).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_comes_once_an_epoch_in_a_seeded_order() {
        let n = 10;
        let mut seen: Vec<usize> = (0..5).flat_map(|s| step_indices(n, 2, s, 3)).collect();
        assert_ne!(seen, (0..10).collect::<Vec<_>>());
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // A step across an epoch boundary, and the same step twice.
        assert_eq!(step_indices(n, 4, 2, 3), step_indices(n, 4, 2, 3));
        assert_ne!(step_indices(n, 10, 0, 3), step_indices(n, 10, 1, 3));
    }

    #[test]
    fn the_plan_names_the_projections_the_engine_has() {
        assert_eq!(kokushi_shared::tuning::plan::PROJECTIONS, PROJECTIONS);
    }
}
