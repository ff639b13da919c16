//! What the tables show and in what order: the leaderboard's sorting, filtering and selection,
//! and the run page's question filters and pages. Plain Rust, tested on the host.

use kokushi_shared::api::{RunStatus, RunSummary};

use crate::i18n::{self, t};

/// A leaderboard column one can sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Model,
    ExamSet,
    Format,
    /// Worked examples per question.
    Shots,
    Status,
    Accuracy,
    ExactMatch,
    Gestalt,
    /// Accuracy after human grading, where a run has any.
    Human,
    Points,
    ParseFailures,
    /// Newest first by default: the run id grows with time.
    Created,
}

impl SortKey {
    /// The direction a first click sorts in: numbers and dates best/newest first, names A→Z.
    pub fn descending_first(self) -> bool {
        matches!(
            self,
            SortKey::Accuracy
                | SortKey::ExactMatch
                | SortKey::Gestalt
                | SortKey::Human
                | SortKey::Points
                | SortKey::Created
                | SortKey::ParseFailures
        )
    }
}

/// The leaderboard's order: a column and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Self {
            key: SortKey::Created,
            descending: true,
        }
    }
}

impl Sort {
    /// The order after a click on `key`'s header: the same column flips, another starts in its
    /// natural direction.
    pub fn clicked(self, key: SortKey) -> Self {
        if self.key == key {
            Self {
                key,
                descending: !self.descending,
            }
        } else {
            Self {
                key,
                descending: key.descending_first(),
            }
        }
    }

    /// `aria-sort` of `key`'s header.
    pub fn aria(self, key: SortKey) -> &'static str {
        match (self.key == key, self.descending) {
            (false, _) => "none",
            (true, true) => "descending",
            (true, false) => "ascending",
        }
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        -1.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

fn status_rank(status: RunStatus) -> u8 {
    match status {
        RunStatus::Running => 0,
        RunStatus::Queued => 1,
        RunStatus::Succeeded => 2,
        RunStatus::Failed => 3,
        RunStatus::Cancelled => 4,
    }
}

/// Whether a comma-separated list (a leaderboard query value) holds `value`.
pub fn list_contains(list: &Option<String>, value: &str) -> bool {
    list.as_deref()
        .is_some_and(|l| l.split(',').any(|v| v == value))
}

/// The list with `value` added, or removed when it was there; `None` once empty. Values keep
/// their sorted order so equal filters are equal strings.
pub fn toggle_in_list(list: &Option<String>, value: &str) -> Option<String> {
    let mut values: Vec<&str> = list
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|v| !v.is_empty())
        .collect();
    match values.iter().position(|v| *v == value) {
        Some(at) => {
            values.remove(at);
        }
        None => {
            values.push(value);
            values.sort_unstable();
        }
    }
    (!values.is_empty()).then(|| values.join(","))
}

/// Every exam year the runs' verdicts name, in order.
pub fn years_of(runs: &[RunSummary]) -> Vec<u16> {
    let mut years: Vec<u16> = runs
        .iter()
        .flat_map(|r| r.years.iter().filter_map(|y| y.year))
        .collect();
    years.sort_unstable();
    years.dedup();
    years
}

/// A text metric's share of the run's scored answers; -1 for a run without metrics, so those
/// sort after every run that has them.
fn metric(run: &RunSummary, count: fn(&kokushi_shared::api::RunMetrics) -> u32) -> f64 {
    run.metrics
        .as_ref()
        .filter(|m| m.questions > 0)
        .map_or(-1.0, |m| f64::from(count(m)) / f64::from(m.questions))
}

/// The human-adjusted accuracy; -1 for a run without human grades, so those sort last.
fn human(run: &RunSummary) -> f64 {
    run.human.and_then(|h| h.accuracy()).unwrap_or(-1.0)
}

/// Sorts in place; ties fall back to newest first, so the order is stable between polls.
pub fn sort_runs(runs: &mut [RunSummary], sort: Sort) {
    runs.sort_by(|a, b| {
        use std::cmp::Ordering;
        let by = match sort.key {
            SortKey::Model => a
                .model
                .cmp(&b.model)
                .then_with(|| a.adapter.cmp(&b.adapter)),
            SortKey::ExamSet => a.exam_set.cmp(&b.exam_set),
            SortKey::Format => a.prompt_format.cmp(&b.prompt_format),
            SortKey::Shots => a.shots.cmp(&b.shots),
            SortKey::Status => status_rank(a.status).cmp(&status_rank(b.status)),
            SortKey::Accuracy => ratio(a.tally.correct, a.tally.answered)
                .partial_cmp(&ratio(b.tally.correct, b.tally.answered))
                .unwrap_or(Ordering::Equal),
            SortKey::ExactMatch => metric(a, |m| m.exact_match)
                .partial_cmp(&metric(b, |m| m.exact_match))
                .unwrap_or(Ordering::Equal),
            SortKey::Gestalt => metric(a, |m| m.gestalt_correct)
                .partial_cmp(&metric(b, |m| m.gestalt_correct))
                .unwrap_or(Ordering::Equal),
            SortKey::Human => human(a).partial_cmp(&human(b)).unwrap_or(Ordering::Equal),
            SortKey::Points => ratio(a.tally.points, a.tally.points_possible)
                .partial_cmp(&ratio(b.tally.points, b.tally.points_possible))
                .unwrap_or(Ordering::Equal),
            SortKey::ParseFailures => a.tally.parse_failures.cmp(&b.tally.parse_failures),
            SortKey::Created => a.id.cmp(&b.id),
        };
        let by = if sort.descending { by.reverse() } else { by };
        by.then_with(|| b.id.cmp(&a.id))
    });
}

/// The leaderboard's filters; the empty value shows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Words that must each appear in the model, adapter, exam set or prompt format.
    pub text: String,
    /// An exact exam set name.
    pub exam_set: String,
    /// Only finished runs that succeeded.
    pub succeeded_only: bool,
}

impl Filter {
    pub fn keeps(&self, run: &RunSummary) -> bool {
        if !self.exam_set.is_empty() && run.exam_set != self.exam_set {
            return false;
        }
        if self.succeeded_only && run.status != RunStatus::Succeeded {
            return false;
        }
        let haystack = format!(
            "{} {} {} {}",
            run.model,
            run.adapter.as_deref().unwrap_or_default(),
            run.exam_set,
            run.prompt_format
        )
        .to_lowercase();
        self.text
            .to_lowercase()
            .split_whitespace()
            .all(|word| haystack.contains(word))
    }
}

/// The rows to show: filtered, then sorted.
pub fn visible_runs(runs: &[RunSummary], filter: &Filter, sort: Sort) -> Vec<RunSummary> {
    let mut rows: Vec<RunSummary> = runs.iter().filter(|r| filter.keeps(r)).cloned().collect();
    sort_runs(&mut rows, sort);
    rows
}

/// The exam set names present, sorted, for the filter's menu.
pub fn exam_set_names(runs: &[RunSummary]) -> Vec<String> {
    let mut names: Vec<String> = runs.iter().map(|r| r.exam_set.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// Ticks a run for comparison: at most two are kept, the oldest tick dropping out.
pub fn toggle_selected(selected: &[i64], id: i64) -> Vec<i64> {
    if selected.contains(&id) {
        selected.iter().copied().filter(|s| *s != id).collect()
    } else {
        let mut next: Vec<i64> = selected.to_vec();
        next.push(id);
        if next.len() > 2 {
            next.remove(0);
        }
        next
    }
}

pub use kokushi_shared::api::QuestionFilter;

/// The run page's label of a question filter.
pub fn filter_label(filter: QuestionFilter) -> &'static str {
    t(match filter {
        QuestionFilter::All => i18n::RUN_FILTER_ALL,
        QuestionFilter::Wrong => i18n::RUN_FILTER_WRONG,
        QuestionFilter::ParseFailed => i18n::RUN_FILTER_PARSE_FAILED,
        QuestionFilter::MultiAnswer => i18n::RUN_FILTER_MULTI_ANSWER,
        QuestionFilter::Unanswered => i18n::RUN_FILTER_UNANSWERED,
    })
}

/// Rows a page of the question table holds: enough to read, few enough to draw at once.
pub const PAGE_SIZE: usize = 100;

/// How many pages `rows` rows fill (at least one).
pub fn page_count(rows: usize) -> usize {
    rows.div_ceil(PAGE_SIZE).max(1)
}

#[cfg(test)]
mod tests {
    use kokushi_shared::api::{QuestionResult, ScoredAnswer};
    use kokushi_shared::exam::Gold;
    use kokushi_shared::extract::Extracted;
    use kokushi_shared::metric::Tally;

    use super::*;

    fn run(id: i64, model: &str, correct: u32, answered: u32, status: RunStatus) -> RunSummary {
        RunSummary {
            id,
            exam_set: if id % 2 == 0 {
                "igakuqa-116"
            } else {
                "igakuqa-117"
            }
            .into(),
            model: model.into(),
            adapter: None,
            prompt_format: "chatml_ja_v1".into(),
            scoring: Default::default(),
            shots: 0,
            status,
            total: 400,
            tally: Tally {
                answered,
                correct,
                parse_failures: id as u32,
                points: correct,
                points_possible: answered,
            },
            accuracy_interval: None,
            years: Vec::new(),
            metrics: None,
            human: None,
            created_at: String::new(),
            error: None,
            project: String::new(),
            published: false,
        }
    }

    fn runs() -> Vec<RunSummary> {
        vec![
            run(1, "gemma", 200, 400, RunStatus::Succeeded),
            run(2, "llama", 300, 400, RunStatus::Succeeded),
            run(3, "qwen", 0, 0, RunStatus::Queued),
            run(4, "Gemma-LoRA", 250, 400, RunStatus::Running),
        ]
    }

    fn ids(rows: &[RunSummary]) -> Vec<i64> {
        rows.iter().map(|r| r.id).collect()
    }

    #[test]
    fn the_default_order_is_newest_first() {
        let rows = visible_runs(&runs(), &Filter::default(), Sort::default());
        assert_eq!(ids(&rows), [4, 3, 2, 1]);
    }

    #[test]
    fn accuracy_sorts_best_first_and_unanswered_runs_last() {
        let sort = Sort::default().clicked(SortKey::Accuracy);
        assert!(sort.descending);
        assert_eq!(
            ids(&visible_runs(&runs(), &Filter::default(), sort)),
            [2, 4, 1, 3]
        );
        let flipped = sort.clicked(SortKey::Accuracy);
        assert!(!flipped.descending);
        assert_eq!(flipped.aria(SortKey::Accuracy), "ascending");
        assert_eq!(flipped.aria(SortKey::Model), "none");
        assert_eq!(
            ids(&visible_runs(&runs(), &Filter::default(), flipped)),
            [3, 1, 4, 2]
        );
    }

    #[test]
    fn names_sort_a_to_z_first() {
        let sort = Sort::default().clicked(SortKey::Model);
        assert!(!sort.descending);
        assert_eq!(
            ids(&visible_runs(&runs(), &Filter::default(), sort)),
            [4, 1, 2, 3]
        );
    }

    #[test]
    fn filters_combine_words_exam_set_and_status() {
        let f = Filter {
            text: "gemma".into(),
            ..Filter::default()
        };
        assert_eq!(ids(&visible_runs(&runs(), &f, Sort::default())), [4, 1]);
        let f = Filter {
            text: "GEMMA lora".into(),
            ..Filter::default()
        };
        assert_eq!(ids(&visible_runs(&runs(), &f, Sort::default())), [4]);
        let f = Filter {
            exam_set: "igakuqa-116".into(),
            succeeded_only: true,
            ..Filter::default()
        };
        assert_eq!(ids(&visible_runs(&runs(), &f, Sort::default())), [2]);
        assert_eq!(exam_set_names(&runs()), ["igakuqa-116", "igakuqa-117"]);
    }

    #[test]
    fn at_most_two_runs_are_selected() {
        let s = toggle_selected(&[], 1);
        let s = toggle_selected(&s, 2);
        assert_eq!(s, [1, 2]);
        assert_eq!(toggle_selected(&s, 3), [2, 3]);
        assert_eq!(toggle_selected(&s, 1), [2]);
    }

    fn question(id: &str, gold: &[char], answer: Option<(bool, Extracted)>) -> QuestionResult {
        QuestionResult {
            problem_id: id.into(),
            text: String::new(),
            choices: Vec::new(),
            gold: Gold::Letters {
                letters: gold.to_vec(),
            },
            points: 1,
            specialty: None,
            answer: answer.map(|(correct, extracted)| ScoredAnswer {
                raw_output: String::new(),
                extracted,
                correct,
                latency_ms: 1,
                choice_logprobs: None,
            }),
        }
    }

    #[test]
    fn question_filters_pick_what_they_say() {
        let a = Extracted::Letters { letters: vec!['a'] };
        let qs = [
            question("1", &['a'], Some((true, a.clone()))),
            question("2", &['b'], Some((false, a))),
            question("3", &['a', 'c'], Some((false, Extracted::Unparsed))),
            question("4", &['a'], None),
        ];
        let pick = |f: QuestionFilter| -> Vec<&str> {
            qs.iter()
                .filter(|q| f.keeps(q))
                .map(|q| q.problem_id.as_str())
                .collect()
        };
        assert_eq!(pick(QuestionFilter::All), ["1", "2", "3", "4"]);
        assert_eq!(pick(QuestionFilter::Wrong), ["2", "3"]);
        assert_eq!(pick(QuestionFilter::ParseFailed), ["3"]);
        assert_eq!(pick(QuestionFilter::MultiAnswer), ["3"]);
        assert_eq!(pick(QuestionFilter::Unanswered), ["4"]);
        let ids: std::collections::HashSet<&str> =
            QuestionFilter::ALL.iter().map(|f| f.id()).collect();
        assert_eq!(ids.len(), QuestionFilter::ALL.len(), "ids are distinct");
    }

    #[test]
    fn two_thousand_rows_make_twenty_pages() {
        assert_eq!(page_count(2_000), 20);
        assert_eq!(page_count(2_001), 21);
        assert_eq!(page_count(0), 1);
    }

    #[test]
    fn query_lists_toggle_values_in_sorted_order_and_empty_to_none() {
        let one = toggle_in_list(&None, "D");
        assert_eq!(one.as_deref(), Some("D"));
        let two = toggle_in_list(&one, "A");
        assert_eq!(two.as_deref(), Some("A,D"));
        assert!(list_contains(&two, "A") && list_contains(&two, "D"));
        assert!(!list_contains(&two, "B") && !list_contains(&None, "A"));
        assert_eq!(toggle_in_list(&two, "D").as_deref(), Some("A"));
        assert_eq!(toggle_in_list(&Some("A".to_owned()), "A"), None);
    }

    #[test]
    fn runs_without_text_metrics_sort_after_those_with_them() {
        let mut all = runs();
        all[0].metrics = Some(kokushi_shared::api::RunMetrics {
            questions: 10,
            correct_strict: 3,
            exact_match: 1,
            gestalt_correct: 4,
        });
        all[1].metrics = Some(kokushi_shared::api::RunMetrics {
            questions: 10,
            correct_strict: 3,
            exact_match: 2,
            gestalt_correct: 2,
        });
        let by = |key| {
            let sort = Sort::default().clicked(key);
            ids(&visible_runs(&all, &Filter::default(), sort))
        };
        let exact = by(SortKey::ExactMatch);
        let gestalt = by(SortKey::Gestalt);
        assert_eq!(&exact[..2], [all[1].id, all[0].id]);
        assert_eq!(&gestalt[..2], [all[0].id, all[1].id]);
    }

    #[test]
    fn human_accuracy_sorts_best_first_and_ungraded_runs_last() {
        use kokushi_shared::grading::HumanAdjusted;
        let mut all = runs();
        let graded = |correct| {
            Some(HumanAdjusted {
                answered: 10,
                correct,
                resolved: 4,
                changed: 1,
            })
        };
        all[0].human = graded(3);
        all[2].human = graded(8);
        let sort = Sort::default().clicked(SortKey::Human);
        assert!(sort.descending);
        let order = ids(&visible_runs(&all, &Filter::default(), sort));
        assert_eq!(&order[..2], [all[2].id, all[0].id]);
        let flipped = sort.clicked(SortKey::Human);
        let order = ids(&visible_runs(&all, &Filter::default(), flipped));
        assert_eq!(&order[2..], [all[0].id, all[2].id]);
    }
}
