//! Exports: a run's answers as JSON lines (a predictions file `kokushi score` reads) or CSV, its
//! metrics as CSV, and the leaderboard as CSV. CSV follows RFC 4180 (fields quoted when they
//! hold a comma, quote or line break); a text field that a spreadsheet would take for a formula
//! (starting with `=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'`.

use std::fmt::Write;

use kokushi_shared::api::{RunDetail, RunSummary};
use serde::Serialize;

/// One CSV field.
pub fn field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

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
    let mut out = String::from(
        "run_id,problem_id,prediction,raw_output,parse_failed,correct,gold,points,latency_ms,\
         model,prompt_format,rules_version\n",
    );
    for l in answer_lines(detail) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            l.run_id,
            field(l.problem_id),
            field(&l.prediction),
            field(l.raw_output),
            l.parse_failed,
            l.correct,
            field(&l.gold),
            l.points,
            l.latency_ms,
            field(l.model),
            field(l.prompt_format),
            field(l.rules_version),
        );
    }
    out
}

/// One row per run, as the leaderboard lists them (with its filter, if any). The text metrics
/// are empty until a run has succeeded (or while a filter keeps none of its answers).
pub fn leaderboard_csv(runs: &[RunSummary]) -> String {
    let mut out = String::from(
        "run_id,model,adapter,exam_set,prompt_format,scoring,status,questions,answered,correct,\
         accuracy,parse_failures,points,points_possible,correct_strict,exact_match,\
         gestalt_correct,human_correct,human_accuracy,human_resolved,created_at\n",
    );
    for r in runs {
        let accuracy = r
            .tally
            .accuracy()
            .map_or_else(String::new, |a| format!("{a:.6}"));
        let metric = |count: fn(&kokushi_shared::api::RunMetrics) -> u32| {
            r.metrics
                .as_ref()
                .map_or_else(String::new, |m| count(m).to_string())
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.id,
            field(&r.model),
            field(r.adapter.as_deref().unwrap_or_default()),
            field(&r.exam_set),
            field(&r.prompt_format),
            r.scoring.as_str(),
            r.status.as_str(),
            r.total,
            r.tally.answered,
            r.tally.correct,
            accuracy,
            r.tally.parse_failures,
            r.tally.points,
            r.tally.points_possible,
            metric(|m| m.correct_strict),
            metric(|m| m.exact_match),
            metric(|m| m.gestalt_correct),
            r.human.map_or_else(String::new, |h| h.correct.to_string()),
            r.human
                .and_then(|h| h.accuracy())
                .map_or_else(String::new, |a| format!("{a:.6}")),
            r.human.map_or_else(String::new, |h| h.resolved.to_string()),
            field(&r.created_at),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_quoted_as_rfc_4180_says_and_formulas_are_defused() {
        assert_eq!(field("b,d"), "\"b,d\"");
        assert_eq!(field("答え：b"), "答え：b");
        assert_eq!(field("he said \"c\""), "\"he said \"\"c\"\"\"");
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1"), "'-1");
        assert_eq!(field(""), "");
    }
}
