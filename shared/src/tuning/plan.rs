//! The plan of a LoRA tuning run: the recipe (rank, alpha, targets, learning-rate schedule…),
//! its named presets, the data sources with their checksums, the seed and step counts. The
//! server fixes a plan when a tuning is created, the job carries it to the worker as this type,
//! and the adapter's manifest records it, so a resumed run trains exactly as it began.

use serde::{Deserialize, Serialize};

/// The projections of a transformer block by their Hugging Face (PEFT) module names: what a
/// recipe's `targets` may name (the engine checks its own list is the same).
pub const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// How the learning rate moves over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear warm-up, then linear decay to zero at the last step.
    Linear,
    /// Linear warm-up, then half a cosine down to zero at the last step.
    Cosine,
    /// Linear warm-up, then constant.
    Constant,
}

/// A tuning recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<String>,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Warm-up as a share of the run's steps.
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    /// Examples a step (gradients accumulated over them).
    pub batch: usize,
    /// Examples longer than this many tokens are left out (and counted).
    pub max_seq_len: usize,
    pub max_grad_norm: f64,
}

/// The named recipes.
pub const PRESETS: [&str; 3] = ["jmedlora-7b", "jmedlora-70b", "small"];

impl Recipe {
    /// A named recipe: `jmedlora-7b` (the 7B study: r 8, alpha 32, dropout 0.05 on q/k/v,
    /// lr 5e-5), `jmedlora-70b` (the 70B study: r 64, alpha 16, dropout 0.1 on every linear
    /// layer, lr 2e-4, for a quantized base), or `small` (for the demo models: r 8, alpha 16,
    /// every linear layer, lr 1e-3). What the studies do not state is Hugging Face Trainer's
    /// behaviour: AdamW without weight decay, gradients clipped at norm 1, a short warm-up.
    pub fn preset(name: &str) -> Option<Self> {
        let base = Recipe {
            rank: 8,
            alpha: 32.0,
            dropout: 0.05,
            targets: ["q_proj", "k_proj", "v_proj"].map(str::to_owned).to_vec(),
            learning_rate: 5e-5,
            weight_decay: 0.0,
            warmup_ratio: 0.03,
            schedule: Schedule::Linear,
            batch: 8,
            max_seq_len: 512,
            max_grad_norm: 1.0,
        };
        match name {
            "jmedlora-7b" => Some(base),
            "jmedlora-70b" => Some(Recipe {
                rank: 64,
                alpha: 16.0,
                dropout: 0.1,
                targets: PROJECTIONS.map(str::to_owned).to_vec(),
                learning_rate: 2e-4,
                schedule: Schedule::Cosine,
                ..base
            }),
            "small" => Some(Recipe {
                rank: 8,
                alpha: 16.0,
                dropout: 0.05,
                targets: PROJECTIONS.map(str::to_owned).to_vec(),
                learning_rate: 1e-3,
                schedule: Schedule::Cosine,
                ..base
            }),
            _ => None,
        }
    }

    /// The learning rate of step `step` (0-based) of `total`.
    pub fn learning_rate_at(&self, step: u64, total: u64) -> f64 {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let warmup = ((total as f64 * self.warmup_ratio).ceil() as u64).min(total);
        #[allow(clippy::cast_precision_loss)]
        let warming = (step < warmup).then(|| (step + 1) as f64 / warmup as f64);
        if let Some(share) = warming {
            return self.learning_rate * share;
        }
        #[allow(clippy::cast_precision_loss)]
        let progress = if total > warmup {
            (step - warmup) as f64 / (total - warmup) as f64
        } else {
            0.0
        };
        match self.schedule {
            Schedule::Constant => self.learning_rate,
            Schedule::Linear => self.learning_rate * (1.0 - progress),
            Schedule::Cosine => {
                self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// Where a run's data came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSource {
    /// `exam`, `jmmlu` or `instructions`.
    pub kind: String,
    pub path: String,
    /// SHA-256 of the files' bytes, in the order read.
    pub sha256: String,
    pub examples: usize,
}

/// Everything that fixes a run's outcome; a resumed run must have the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    /// The base model as given (a path or a demo model's name).
    pub base_model: String,
    pub preset: String,
    pub recipe: Recipe,
    /// The format id, or several comma-separated.
    pub prompt_format: String,
    pub sources: Vec<DataSource>,
    pub seed: u64,
    pub validation_share: f64,
    /// Optimizer steps in the run.
    pub steps: u64,
    /// Validation every this many steps (and at the end); 0 for only at the end.
    pub eval_every: u64,
    /// A checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_then_decays_to_zero() {
        let mut recipe = Recipe::preset("small").expect("a preset");
        recipe.warmup_ratio = 0.1;
        let total = 100;
        let lr = |s| recipe.learning_rate_at(s, total);
        assert!((lr(0) - recipe.learning_rate / 10.0).abs() < 1e-12);
        assert!((lr(9) - recipe.learning_rate).abs() < 1e-12);
        assert!((lr(10) - recipe.learning_rate).abs() < 1e-12);
        assert!(lr(55) < recipe.learning_rate * 0.6 && lr(55) > recipe.learning_rate * 0.4);
        assert!(lr(99) < recipe.learning_rate * 0.01);
        recipe.schedule = Schedule::Linear;
        assert!((recipe.learning_rate_at(55, total) - recipe.learning_rate * 0.5).abs() < 1e-12);
    }

    #[test]
    fn the_presets_carry_the_studies_recipes() {
        let seven = Recipe::preset("jmedlora-7b").expect("preset");
        assert_eq!((seven.rank, seven.alpha, seven.dropout), (8, 32.0, 0.05));
        assert_eq!(seven.targets, ["q_proj", "k_proj", "v_proj"]);
        assert!((seven.learning_rate - 5e-5).abs() < 1e-15);
        let seventy = Recipe::preset("jmedlora-70b").expect("preset");
        assert_eq!(
            (seventy.rank, seventy.alpha, seventy.dropout),
            (64, 16.0, 0.1)
        );
        assert_eq!(seventy.targets.len(), 7);
        assert!((seventy.learning_rate - 2e-4).abs() < 1e-15);
        assert!(Recipe::preset("nope").is_none());
        for name in PRESETS {
            assert!(Recipe::preset(name).is_some());
        }
    }
}
