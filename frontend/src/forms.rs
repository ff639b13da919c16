//! The job launcher's forms: what the user typed, checked field by field before anything is
//! sent, so a mistake is named next to its field. The server checks everything again.

use kokushi_shared::api::{ChainedEvaluation, CreateRun, CreateTuning};
use kokushi_shared::job::{LoglikTarget, MAX_SHOTS, Priority, Scoring};
use kokushi_shared::prompt::PromptFormat;

use crate::i18n::{self, t, tf};

/// The tuning presets the worker knows (the seed papers' recipes, and a small one for tests).
pub const PRESETS: [&str; 3] = ["small", "jmedlora-7b", "jmedlora-70b"];

/// A problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

pub(crate) fn error(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// An optional whole number in `min..=max`; empty means `None`.
pub(crate) fn optional_number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    field: &'static str,
    text: &str,
    min: T,
    max: T,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match text.parse::<T>() {
        Ok(v) if v >= min && v <= max => Some(v),
        _ => {
            errors.push(error(
                field,
                tf(i18n::FORMS_NUMBER_RANGE, &[("min", &min), ("max", &max)]),
            ));
            None
        }
    }
}

fn exam_set(field: &'static str, text: &str, errors: &mut Vec<FieldError>) -> i64 {
    match text.trim().parse::<i64>() {
        Ok(id) if id > 0 => id,
        _ => {
            errors.push(error(field, t(i18n::FORMS_CHOOSE_EXAM_SET)));
            0
        }
    }
}

/// What the prompt-format list offers besides the formats: the model's own chat template.
pub const CHAT_TEMPLATE: &str = "chat_template";

fn prompt_format(text: &str, errors: &mut Vec<FieldError>) -> String {
    if PromptFormat::from_id(text).is_none() {
        errors.push(error("prompt_format", t(i18n::FORMS_CHOOSE_PROMPT_FORMAT)));
    }
    text.to_owned()
}

fn priority(text: &str) -> Priority {
    Priority::parse(text).unwrap_or_default()
}

/// The evaluation form, as typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalForm {
    pub exam_set: String,
    pub model: String,
    pub adapter: String,
    /// A prompt format's id, or [`CHAT_TEMPLATE`].
    pub prompt_format: String,
    pub limit: String,
    pub max_new_tokens: String,
    /// `generation` (also when empty) or `loglik`.
    pub scoring: String,
    /// In loglik scoring: `letter` (also when empty) or `text`.
    pub loglik_target: String,
    /// Worked examples before each question; empty: none.
    pub shots: String,
    /// The exam set the worked examples come from; empty: the run's own.
    pub shot_pool: String,
    /// The seed of the choice of worked examples; empty: the default.
    pub shot_seed: String,
    /// Requantize the file's Q5 matrices to Q8_0 (unchecked: its own quantization is kept).
    pub requantize: bool,
    pub priority: String,
}

impl EvalForm {
    pub fn request(&self) -> Result<CreateRun, Vec<FieldError>> {
        let mut errors = Vec::new();
        let exam_set_id = exam_set("exam_set", &self.exam_set, &mut errors);
        if self.model.trim().is_empty() {
            errors.push(error("model", t(i18n::FORMS_CHOOSE_MODEL)));
        }
        let prompt_format = if self.prompt_format == CHAT_TEMPLATE {
            self.prompt_format.clone()
        } else {
            prompt_format(&self.prompt_format, &mut errors)
        };
        let limit = optional_number("limit", &self.limit, 1u32, 100_000, &mut errors);
        let max_new_tokens = optional_number(
            "max_new_tokens",
            &self.max_new_tokens,
            1u32,
            1024,
            &mut errors,
        );
        let shots =
            optional_number("shots", &self.shots, 0u32, MAX_SHOTS, &mut errors).unwrap_or(0);
        let shot_pool_exam_set_id = match self.shot_pool.trim() {
            "" => None,
            _ => Some(exam_set("shot_pool", &self.shot_pool, &mut errors)),
        };
        // The server keeps seeds below 2^63 (they are stored as signed integers).
        let shot_seed = optional_number(
            "shot_seed",
            &self.shot_seed,
            0u64,
            i64::MAX as u64,
            &mut errors,
        );
        if !errors.is_empty() {
            return Err(errors);
        }
        let scoring = Scoring::parse(&self.scoring).unwrap_or_default();
        Ok(CreateRun {
            exam_set_id,
            model: self.model.trim().to_owned(),
            adapter: Some(self.adapter.trim().to_owned()).filter(|a| !a.is_empty()),
            prompt_format,
            limit,
            max_new_tokens,
            scoring,
            loglik_target: match (scoring, self.loglik_target.as_str()) {
                (Scoring::Loglik, "text") => LoglikTarget::Text,
                _ => LoglikTarget::Letter,
            },
            shots,
            // Worked examples only when there are any: a pool without shots means nothing.
            shot_pool_exam_set_id: shot_pool_exam_set_id.filter(|_| shots > 0),
            shot_seed: shot_seed.filter(|_| shots > 0),
            keep_quantization: !self.requantize,
            priority: priority(&self.priority),
        })
    }
}

/// The tuning form, as typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TuneForm {
    pub base_model: String,
    pub adapter: String,
    pub data_exam_set: String,
    pub prompt_format: String,
    pub preset: String,
    pub steps: String,
    pub learning_rate: String,
    pub validation_share: String,
    pub seed: String,
    /// An exam set to evaluate the base and the tuned model on afterwards; empty for none.
    pub evaluate_exam_set: String,
    pub evaluate_limit: String,
    pub priority: String,
}

impl TuneForm {
    pub fn request(&self) -> Result<CreateTuning, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.base_model.trim().is_empty() {
            errors.push(error("base_model", t(i18n::FORMS_CHOOSE_BASE_MODEL)));
        }
        let adapter = self.adapter.trim();
        if adapter.is_empty()
            || adapter.starts_with('.')
            || !adapter
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            errors.push(error("adapter", t(i18n::FORMS_ADAPTER_NAME)));
        }
        let data_exam_set_id = exam_set("data_exam_set", &self.data_exam_set, &mut errors);
        let prompt_format = prompt_format(&self.prompt_format, &mut errors);
        if !self.preset.is_empty() && !PRESETS.contains(&self.preset.as_str()) {
            errors.push(error("preset", t(i18n::FORMS_CHOOSE_PRESET)));
        }
        let steps = optional_number("steps", &self.steps, 1u64, 1_000_000, &mut errors);
        let learning_rate =
            optional_number("learning_rate", &self.learning_rate, 1e-7, 1.0, &mut errors);
        let validation_share = optional_number(
            "validation_share",
            &self.validation_share,
            0.0,
            0.5,
            &mut errors,
        );
        let seed = optional_number("seed", &self.seed, 0u64, u64::MAX, &mut errors);
        let evaluate = if self.evaluate_exam_set.trim().is_empty() {
            None
        } else {
            let exam_set_id = exam_set("evaluate_exam_set", &self.evaluate_exam_set, &mut errors);
            let limit = optional_number(
                "evaluate_limit",
                &self.evaluate_limit,
                1u32,
                100_000,
                &mut errors,
            );
            Some(ChainedEvaluation {
                exam_set_id,
                limit,
                max_new_tokens: None,
            })
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CreateTuning {
            base_model: self.base_model.trim().to_owned(),
            adapter: adapter.to_owned(),
            data_exam_set_id,
            prompt_format,
            preset: Some(self.preset.clone()).filter(|p| !p.is_empty()),
            steps,
            batch: None,
            learning_rate,
            seed,
            validation_share,
            evaluate,
            priority: priority(&self.priority),
        })
    }
}

/// The message for `field`, if it has one.
pub fn message_for(errors: &[FieldError], field: &str) -> Option<String> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval() -> EvalForm {
        EvalForm {
            exam_set: "3".into(),
            model: "gemma-3-270m.gguf".into(),
            prompt_format: "chatml_ja_v1".into(),
            priority: "high".into(),
            ..EvalForm::default()
        }
    }

    #[test]
    fn a_complete_evaluation_form_makes_its_request() {
        let mut form = eval();
        form.limit = " 20 ".into();
        let req = form.request().expect("valid");
        assert_eq!(req.exam_set_id, 3);
        assert_eq!(req.limit, Some(20));
        assert_eq!(req.max_new_tokens, None);
        assert_eq!(req.adapter, None);
        assert_eq!(req.priority, Priority::High);
        assert_eq!(
            (req.shots, req.shot_seed, req.shot_pool_exam_set_id),
            (0, None, None)
        );
        assert_eq!(req.loglik_target, LoglikTarget::Letter);
    }

    #[test]
    fn every_setting_of_kokushi_eval_reaches_the_request() {
        let mut form = eval();
        form.prompt_format = CHAT_TEMPLATE.into();
        form.scoring = "loglik".into();
        form.loglik_target = "text".into();
        form.shots = "3".into();
        form.shot_pool = "7".into();
        form.shot_seed = "42".into();
        form.requantize = true;
        let req = form.request().expect("valid");
        assert_eq!(req.prompt_format, "chat_template");
        assert_eq!(
            (req.scoring, req.loglik_target),
            (Scoring::Loglik, LoglikTarget::Text)
        );
        assert_eq!(
            (req.shots, req.shot_pool_exam_set_id, req.shot_seed),
            (3, Some(7), Some(42))
        );
        assert!(!req.keep_quantization);
        // A text target means nothing in generation; a pool and seed nothing without shots.
        form.scoring = "generation".into();
        form.shots = String::new();
        let req = form.request().expect("valid");
        assert_eq!(req.loglik_target, LoglikTarget::Letter);
        assert_eq!(
            (req.shots, req.shot_pool_exam_set_id, req.shot_seed),
            (0, None, None)
        );
    }

    #[test]
    fn shots_and_their_seed_are_checked() {
        let mut form = eval();
        form.shots = "9".into();
        form.shot_seed = "-1".into();
        let errors = form.request().expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["shots", "shot_seed"]);
        assert_eq!(
            message_for(&errors, "shots").as_deref(),
            Some("a number from 0 to 8")
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let form = EvalForm {
            limit: "0".into(),
            max_new_tokens: "lots".into(),
            ..EvalForm::default()
        };
        let errors = form.request().expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "exam_set",
                "model",
                "prompt_format",
                "limit",
                "max_new_tokens"
            ]
        );
        assert_eq!(
            message_for(&errors, "limit").as_deref(),
            Some("a number from 1 to 100000")
        );
    }

    #[test]
    fn a_tuning_form_checks_the_adapter_name_and_the_chained_evaluation() {
        let mut form = TuneForm {
            base_model: "smollm2-135m.gguf".into(),
            adapter: "../escape".into(),
            data_exam_set: "1".into(),
            prompt_format: "chatml_ja_v1".into(),
            preset: "small".into(),
            validation_share: "0.9".into(),
            evaluate_exam_set: "2".into(),
            evaluate_limit: "10".into(),
            ..TuneForm::default()
        };
        let errors = form.request().expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["adapter", "validation_share"]);
        form.adapter = "igaku-lora".into();
        form.validation_share = "0.1".into();
        let req = form.request().expect("valid");
        assert_eq!(req.adapter, "igaku-lora");
        assert_eq!(req.validation_share, Some(0.1));
        let evaluate = req.evaluate.expect("chained");
        assert_eq!((evaluate.exam_set_id, evaluate.limit), (2, Some(10)));
    }
}
