//! When a page asks the API again, and what it keeps from each answer.
//!
//! Pages poll every [`POLL_INTERVAL_MS`] while something they show can still change, and stop
//! once everything is finished or the server refuses for good. Pure logic, tested on the host;
//! the timer loop itself lives in [`crate::poll`].

use kokushi_shared::api::{RunDetail, RunSummary};

use crate::error::ApiError;

/// Time between two polls.
pub const POLL_INTERVAL_MS: u32 = 2_000;

/// What a polling page holds: the latest data it received and the error of the latest poll, if
/// that poll failed. A failed poll keeps the data already shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    pub latest: Option<T>,
    pub error: Option<ApiError>,
}

impl<T> Default for Loaded<T> {
    fn default() -> Self {
        Self {
            latest: None,
            error: None,
        }
    }
}

impl<T> Loaded<T> {
    /// Takes in the result of one poll.
    pub fn record(&mut self, result: Result<T, ApiError>) {
        match result {
            Ok(data) => {
                self.latest = Some(data);
                self.error = None;
            }
            Err(error) => self.error = Some(error),
        }
    }

    /// True before the first poll has answered.
    pub fn is_loading(&self) -> bool {
        self.latest.is_none() && self.error.is_none()
    }
}

/// Whether to poll again after `result`: while the data can still change (`unfinished`), or
/// after an error a retry may fix.
pub fn keep_polling<T>(result: &Result<T, ApiError>, unfinished: fn(&T) -> bool) -> bool {
    match result {
        Ok(data) => unfinished(data),
        Err(error) => error.is_transient(),
    }
}

/// The leaderboard can change while any run is queued or running.
pub fn leaderboard_unfinished(runs: &[RunSummary]) -> bool {
    runs.iter().any(|run| !run.status.is_finished())
}

/// A run page can change until its run has succeeded or failed.
pub fn run_unfinished(detail: &RunDetail) -> bool {
    !detail.run.status.is_finished()
}

#[cfg(test)]
mod tests {
    use kokushi_shared::api::RunStatus;
    use kokushi_shared::metric::Tally;

    use super::*;

    fn run(id: i64, status: RunStatus) -> RunSummary {
        RunSummary {
            id,
            exam_set: "igakuqa-116".into(),
            model: "smollm2-135m-q4_1.gguf".into(),
            adapter: None,
            prompt_format: "chatml_ja_v1".into(),
            scoring: Default::default(),
            shots: 0,
            status,
            total: 20,
            tally: Tally::default(),
            accuracy_interval: None,
            years: Vec::new(),
            metrics: None,
            human: None,
            created_at: "2026-11-24T00:00:00Z".into(),
            error: None,
            project: String::new(),
            published: false,
        }
    }

    fn detail(status: RunStatus) -> RunDetail {
        RunDetail {
            waiting: None,
            run: run(1, status),
            rules_version: None,
            credit: String::new(),
            questions: Vec::new(),
            specialties: Vec::new(),
        }
    }

    #[test]
    fn the_leaderboard_polls_while_any_run_is_unfinished() {
        use RunStatus::*;
        let cases: &[(&[RunStatus], bool)] = &[
            (&[], false),
            (&[Succeeded, Failed], false),
            (&[Succeeded, Running], true),
            (&[Queued], true),
            (&[Failed, Failed, Queued, Succeeded], true),
        ];
        for (statuses, expected) in cases {
            let runs: Vec<RunSummary> = statuses
                .iter()
                .zip(1..)
                .map(|(status, id)| run(id, *status))
                .collect();
            let result = Ok(runs);
            assert_eq!(
                keep_polling(&result, |runs: &Vec<_>| leaderboard_unfinished(runs)),
                *expected,
                "{statuses:?}"
            );
        }
    }

    #[test]
    fn a_run_page_polls_until_its_run_is_finished() {
        use RunStatus::*;
        for (status, expected) in [
            (Queued, true),
            (Running, true),
            (Succeeded, false),
            (Failed, false),
        ] {
            assert_eq!(
                keep_polling(&Ok(detail(status)), run_unfinished),
                expected,
                "{status:?}"
            );
        }
    }

    #[test]
    fn errors_keep_polling_only_when_a_retry_can_help() {
        let offline: Result<RunDetail, _> = Err(ApiError::Network {
            message: "Failed to fetch".into(),
        });
        let missing: Result<RunDetail, _> = Err(ApiError::Status {
            status: 404,
            body: None,
        });
        assert!(keep_polling(&offline, run_unfinished));
        assert!(!keep_polling(&missing, run_unfinished));
    }

    #[test]
    fn a_failed_poll_keeps_the_data_already_shown() {
        let mut loaded = Loaded::default();
        assert!(loaded.is_loading());

        loaded.record(Ok(detail(RunStatus::Running)));
        loaded.record(Err(ApiError::Network {
            message: "Failed to fetch".into(),
        }));
        assert_eq!(loaded.latest, Some(detail(RunStatus::Running)));
        assert!(loaded.error.is_some());
        assert!(!loaded.is_loading());

        loaded.record(Ok(detail(RunStatus::Succeeded)));
        assert_eq!(loaded.error, None);
    }
}
