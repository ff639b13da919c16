//! Exports: a run's answers as JSON lines (a predictions file `kokushi score` reads) or CSV, its
//! metrics as CSV, and the leaderboard as CSV. Every CSV goes through
//! [`kokushi_shared::csv::Writer`]: RFC 4180 quoting, and text a spreadsheet would take for a
//! formula defused with a leading `'`.

use kokushi_shared::api::{RunDetail, RunSummary};
use kokushi_shared::csv::{Field, Writer};
use serde::Serialize;

/// One answer as exported: IgakuQA's predictions fields and what the run recorded.
#[derive(Debug, Serialize)]
pub struct AnswerLine<'a> {
    pub run_id: i64,
    pub problem_id: &'a str,
    /// Sorted letters joined by "," or the number; the raw output when nothing was extracted
    /// (as `kokushi eval` writes it).
    pub prediction: String,
    pub raw_output: &'a str,
    pub parse_failed: bool,
    pub correct: bool,
    pub gold: String,
    pub points: u32,
    pub latency_ms: u64,
    pub model: &'a str,
    pub prompt_format: &'a str,
    pub rules_version: &'a str,
}

/// The answered questions of a run, in the run's order.
pub fn answer_lines(detail: &RunDetail) -> Vec<AnswerLine<'_>> {
    let rules = detail.rules_version.as_deref().unwrap_or_default();
    detail
        .questions
        .iter()
        .filter_map(|q| {
            let a = q.answer.as_ref()?;
            let prediction = if a.extracted.is_unparsed() {
                a.raw_output.clone()
            } else {
                a.extracted.display()
            };
            Some(AnswerLine {
                run_id: detail.run.id,
                problem_id: &q.problem_id,
                prediction,
                raw_output: &a.raw_output,
                parse_failed: a.extracted.is_unparsed(),
                correct: a.correct,
                gold: q.gold.display(),
                points: q.points,
                latency_ms: a.latency_ms,
                model: &detail.run.model,
                prompt_format: &detail.run.prompt_format,
                rules_version: rules,
            })
        })
        .collect()
}

pub fn answers_jsonl(detail: &RunDetail) -> String {
    answer_lines(detail)
        .iter()
        .filter_map(|l| serde_json::to_string(l).ok())
        .fold(String::new(), |mut out, line| {
            out.push_str(&line);
            out.push('\n');
            out
        })
}

pub fn answers_csv(detail: &RunDetail) -> String {
    let mut w = Writer::new(&[
        "run_id",
        "problem_id",
        "prediction",
        "raw_output",
        "parse_failed",
        "correct",
        "gold",
        "points",
        "latency_ms",
        "model",
        "prompt_format",
        "rules_version",
    ]);
    for l in answer_lines(detail) {
        w.record(&[
            l.run_id.into(),
            l.problem_id.into(),
            (&l.prediction).into(),
            l.raw_output.into(),
            l.parse_failed.into(),
            l.correct.into(),
            (&l.gold).into(),
            l.points.into(),
            l.latency_ms.into(),
            l.model.into(),
            l.prompt_format.into(),
            l.rules_version.into(),
        ]);
    }
    w.finish()
}

/// One row per run, as the leaderboard lists them (with its filter, if any). The text metrics
/// are empty until a run has succeeded (or while a filter keeps none of its answers).
pub fn leaderboard_csv(runs: &[RunSummary]) -> String {
    let mut w = Writer::new(&[
        "run_id",
        "model",
        "adapter",
        "exam_set",
        "prompt_format",
        "scoring",
        "shots",
        "status",
        "questions",
        "answered",
        "correct",
        "accuracy",
        "parse_failures",
        "points",
        "points_possible",
        "correct_strict",
        "exact_match",
        "gestalt_correct",
        "human_correct",
        "human_accuracy",
        "human_resolved",
        "created_at",
    ]);
    for r in runs {
        let six = |a: f64| Field::fixed(a, 6);
        let metric = |count: fn(&kokushi_shared::api::RunMetrics) -> u32| {
            Field::from(r.metrics.as_ref().map(count))
        };
        w.record(&[
            r.id.into(),
            (&r.model).into(),
            r.adapter.as_deref().into(),
            (&r.exam_set).into(),
            (&r.prompt_format).into(),
            r.scoring.as_str().into(),
            r.shots.into(),
            r.status.as_str().into(),
            r.total.into(),
            r.tally.answered.into(),
            r.tally.correct.into(),
            r.tally.accuracy().map_or(Field::Empty, six),
            r.tally.parse_failures.into(),
            r.tally.points.into(),
            r.tally.points_possible.into(),
            metric(|m| m.correct_strict),
            metric(|m| m.exact_match),
            metric(|m| m.gestalt_correct),
            r.human.map(|h| h.correct).into(),
            r.human.and_then(|h| h.accuracy()).map_or(Field::Empty, six),
            r.human.map(|h| h.resolved).into(),
            (&r.created_at).into(),
        ]);
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use kokushi_shared::api::{RunStatus, RunSummary};

    #[test]
    fn an_exam_set_name_that_is_a_formula_is_defused_in_the_leaderboard_csv() {
        let run: RunSummary = serde_json::from_value(serde_json::json!({
            "id": 1, "model": "@evil.gguf", "adapter": null, "prompt_format": "chatml_ja_v1",
            "status": RunStatus::Succeeded, "total": 1,
            "tally": {"answered": 1, "correct": 1, "parse_failures": 0, "points": 1,
                      "points_possible": 1},
            "error": null, "created_at": "2026-12-05T00:00:00Z",
            "exam_set": "=HYPERLINK(\"http://x\",\"y\")"
        }))
        .expect("a run summary");
        let csv = super::leaderboard_csv(&[run]);
        let row = csv.lines().nth(1).expect("a row");
        assert!(row.contains(",'@evil.gguf,"), "{row}");
        assert!(row.contains("\"'=HYPERLINK("), "{row}");
    }
}
