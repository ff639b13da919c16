//! What a job will cost before it runs, and what it cost after (docs/cost.md).
//!
//! The estimate is a dry run: the server builds every prompt the job will put (exactly as the
//! worker will) and counts its tokens with the model's own tokenizer; the time comes from the
//! speed the same model was measured at on this portal's workers, in its latest finished jobs
//! ([`Work`], which a worker reports at the end of each job). Generation splits into prompt
//! passes and one-token passes (the local engine times each); log-likelihood scoring is timed
//! per prompt token. With no measured job of the model yet there is no time, only tokens.

use serde::{Deserialize, Serialize};

use crate::job::Work;

/// How far from the measured time an estimate may be, either way, on the demo models: the
/// factor the tests hold it to, and the one the UI states.
pub const ESTIMATE_FACTOR: f64 = 2.0;

/// The speed of one model on this portal's workers, from its latest measured jobs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Speed {
    /// How many finished jobs it was measured on.
    pub jobs: u32,
    /// Prompt tokens a second through generation's prompt passes.
    pub prefill_tokens_per_second: Option<f64>,
    /// Generated tokens a second (a batch's together).
    pub decode_tokens_per_second: Option<f64>,
    /// Prompt tokens a second through log-likelihood scoring.
    pub scoring_tokens_per_second: Option<f64>,
    /// Milliseconds a question, all told: what a remote model's time is read from.
    pub ms_per_answer: Option<f64>,
    /// Tokens generated per generated answer.
    pub generated_per_answer: Option<f64>,
}

/// The speed measured over `works` (one model's latest jobs); `None` when none answered.
pub fn speed_of(works: &[Work]) -> Option<Speed> {
    let mut total = Work::default();
    for w in works {
        total.add(w);
    }
    if total.answers == 0 {
        return None;
    }
    let rate =
        |tokens: u64, ms: u64| (tokens > 0 && ms > 0).then(|| tokens as f64 * 1000.0 / ms as f64);
    Some(Speed {
        jobs: u32::try_from(works.len()).unwrap_or(u32::MAX),
        prefill_tokens_per_second: rate(total.generated_prompt_tokens, total.prefill_ms),
        decode_tokens_per_second: rate(total.generated_tokens, total.decode_ms),
        scoring_tokens_per_second: rate(
            total
                .prompt_tokens
                .saturating_sub(total.generated_prompt_tokens),
            total.scoring_ms,
        ),
        ms_per_answer: (total.busy_ms > 0).then(|| total.busy_ms as f64 / total.answers as f64),
        generated_per_answer: (total.generated_answers > 0)
            .then(|| total.generated_tokens as f64 / total.generated_answers as f64),
    })
}

/// One prompt of the job, as the dry run counted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prompt {
    pub tokens: u64,
    /// Answered by generation (else scored by log-likelihood).
    pub generated: bool,
}

/// A job's cost before it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Estimate {
    pub questions: u32,
    /// Every prompt's tokens, counted with the model's tokenizer.
    pub prompt_tokens: u64,
    pub generated_answers: u32,
    /// Tokens expected to be generated: the model's measured tokens per answer (at most
    /// `max_new_tokens`) for each generated answer, or `max_new_tokens` each when it was never
    /// measured (`generated_measured` false: an upper bound).
    pub generated_tokens: u64,
    pub generated_measured: bool,
    /// Seconds of answering (the model's load aside); `None` when the model's speed was never
    /// measured on this portal.
    pub seconds: Option<f64>,
    pub speed: Option<Speed>,
    /// The factor the estimate is held to ([`ESTIMATE_FACTOR`]).
    pub factor: f64,
    /// What the figures rest on, in words.
    pub note: String,
}

/// The estimate of a job putting `prompts`, generating at most `max_new_tokens` per answer,
/// on a model measured at `speed`.
pub fn estimate(prompts: &[Prompt], max_new_tokens: u32, speed: Option<&Speed>) -> Estimate {
    let generated: Vec<&Prompt> = prompts.iter().filter(|p| p.generated).collect();
    let scored_tokens: u64 = prompts
        .iter()
        .filter(|p| !p.generated)
        .map(|p| p.tokens)
        .sum();
    let generated_prompt_tokens: u64 = generated.iter().map(|p| p.tokens).sum();
    let per_answer = speed
        .and_then(|s| s.generated_per_answer)
        .map(|g| g.min(f64::from(max_new_tokens)));
    let generated_tokens = match per_answer {
        Some(g) => (g * generated.len() as f64).round() as u64,
        None => u64::from(max_new_tokens) * generated.len() as u64,
    };
    let split = speed.and_then(|s| {
        let generation = if generated.is_empty() {
            0.0
        } else {
            generated_prompt_tokens as f64 / s.prefill_tokens_per_second?
                + generated_tokens as f64 / s.decode_tokens_per_second?
        };
        let scoring = if scored_tokens == 0 {
            0.0
        } else {
            scored_tokens as f64 / s.scoring_tokens_per_second?
        };
        Some(generation + scoring)
    });
    let (seconds, note) = match (split, speed) {
        (Some(seconds), Some(s)) => (
            Some(seconds),
            format!(
                "tokens counted with the model's tokenizer; time from its speed measured in its \
                 last {} job(s)",
                s.jobs
            ),
        ),
        (None, Some(s)) => match s.ms_per_answer {
            Some(ms) => (
                Some(ms * prompts.len() as f64 / 1000.0),
                format!(
                    "time from the model's mean time a question in its last {} job(s) (it was \
                     not measured in this scoring mode)",
                    s.jobs
                ),
            ),
            None => (None, "the model's speed was never measured".to_owned()),
        },
        (_, None) => (
            None,
            "no time: this model has not finished a job on this portal yet, so its speed is \
             unknown (tokens counted with its tokenizer)"
                .to_owned(),
        ),
    };
    Estimate {
        questions: u32::try_from(prompts.len()).unwrap_or(u32::MAX),
        prompt_tokens: prompts.iter().map(|p| p.tokens).sum(),
        generated_answers: u32::try_from(generated.len()).unwrap_or(u32::MAX),
        generated_tokens,
        generated_measured: per_answer.is_some() || generated.is_empty(),
        seconds,
        speed: speed.copied(),
        factor: ESTIMATE_FACTOR,
        note,
    }
}

/// A job's cost: the estimate made when it was queued, and what it took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cost {
    pub estimate: Option<Estimate>,
    pub work: Option<Work>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(answers: u64, prompt: u64, gen_answers: u64, gen_prompt: u64, generated: u64) -> Work {
        Work {
            answers,
            prompt_tokens: prompt,
            generated_answers: gen_answers,
            generated_prompt_tokens: gen_prompt,
            generated_tokens: generated,
            prefill_ms: gen_prompt,    // 1,000 prompt tokens a second
            decode_ms: generated * 10, // 100 generated tokens a second
            scoring_ms: (prompt - gen_prompt) / 2, // 2,000 scored tokens a second
            busy_ms: gen_prompt + generated * 10 + (prompt - gen_prompt) / 2,
        }
    }

    #[test]
    fn speed_and_estimate_by_hand() {
        let s =
            speed_of(&[work(10, 3000, 4, 1000, 200), work(2, 400, 2, 400, 40)]).expect("measured");
        assert_eq!(s.jobs, 2);
        assert_eq!(s.prefill_tokens_per_second, Some(1000.0));
        assert_eq!(s.decode_tokens_per_second, Some(100.0));
        assert_eq!(s.scoring_tokens_per_second, Some(2000.0));
        assert_eq!(s.generated_per_answer, Some(40.0));
        // Two generated prompts of 500 tokens, one scored of 4,000: 1 s of prefill, 80 tokens
        // at 100/s, 2 s of scoring.
        let prompts = [
            Prompt {
                tokens: 500,
                generated: true,
            },
            Prompt {
                tokens: 500,
                generated: true,
            },
            Prompt {
                tokens: 4000,
                generated: false,
            },
        ];
        let e = estimate(&prompts, 64, Some(&s));
        assert_eq!(
            (e.questions, e.prompt_tokens, e.generated_tokens),
            (3, 5000, 80)
        );
        assert!(e.generated_measured);
        assert!(
            (e.seconds.expect("time") - 3.8).abs() < 1e-9,
            "{:?}",
            e.seconds
        );
        // A cap below the measured length caps the expectation.
        assert_eq!(estimate(&prompts, 10, Some(&s)).generated_tokens, 20);
        // Never measured: tokens only, generation at its bound.
        let e = estimate(&prompts, 64, None);
        assert_eq!((e.generated_tokens, e.seconds), (128, None));
        assert!(!e.generated_measured && e.note.contains("no time"));
        assert!(speed_of(&[]).is_none());
    }

    #[test]
    fn a_remote_model_is_timed_per_question() {
        let remote = Work {
            answers: 4,
            prompt_tokens: 400,
            generated_answers: 4,
            generated_prompt_tokens: 400,
            generated_tokens: 40,
            busy_ms: 2000,
            ..Work::default()
        };
        let s = speed_of(&[remote]).expect("measured");
        assert_eq!(s.prefill_tokens_per_second, None);
        let e = estimate(
            &[Prompt {
                tokens: 100,
                generated: true,
            }; 6],
            16,
            Some(&s),
        );
        assert_eq!(e.seconds, Some(3.0));
        assert!(e.note.contains("mean time a question"), "{}", e.note);
    }
}
