//! The app's own URL paths (not the API's, which [`crate::api`] owns).

/// The leaderboard.
pub const HOME: &str = "/";

/// The sign-in page.
pub const LOGIN: &str = "/login";

/// The page of run `id`.
pub fn run_path(id: i64) -> String {
    format!("/runs/{id}")
}

/// Exam sets: upload and browse.
pub const EXAM_SETS: &str = "/exam-sets";

/// Jobs: launch evaluations and tunings, and watch the queue.
pub const JOBS: &str = "/jobs";

/// The worker registry (admins).
pub const WORKERS: &str = "/workers";

/// Question `problem_id` of run `run`.
pub fn question_path(run: i64, problem_id: &str) -> String {
    format!("/runs/{run}/questions/{}", crate::api::encode(problem_id))
}

/// Two runs compared.
pub fn compare_path(first: i64, second: i64) -> String {
    format!("/compare?first={first}&second={second}")
}

/// The page of tuning `id`, with its loss curves.
pub fn tuning_path(id: i64) -> String {
    format!("/tunings/{id}")
}

/// The run id in a `/runs/:id` path segment; `None` for anything that is not a positive integer.
pub fn parse_run_id(segment: &str) -> Option<i64> {
    segment.parse::<i64>().ok().filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_path_round_trips_through_its_id() {
        assert_eq!(run_path(42), "/runs/42");
        assert_eq!(question_path(42, "116A1"), "/runs/42/questions/116A1");
        assert_eq!(compare_path(1, 2), "/compare?first=1&second=2");
        assert_eq!(tuning_path(3), "/tunings/3");
        assert_eq!(parse_run_id("42"), Some(42));
    }

    #[test]
    fn segments_that_are_not_run_ids_are_rejected() {
        for segment in ["", "0", "-3", "abc", "4.5", " 7", "99999999999999999999"] {
            assert_eq!(parse_run_id(segment), None, "{segment:?}");
        }
    }
}
